"""Names the trace writes and the flatbuffer analysis reads.

The trace puts the on-the-fly anchor's ops under `ANCHOR_SCOPE`
(`tracing`); the analysis (`flatbuffer`, `analysis`) attributes ops by
their tensor names, and gathers those of no layer in the pseudo rows
`ANCHOR_ROW`, `OTHER_ROW` and `METADATA_ROW` of an `ExportReport`.
"""

ANCHOR_SCOPE = "adntn_anchor"
OTHER_ROW = "(other)"
ANCHOR_ROW = "(anchor)"
METADATA_ROW = "(metadata)"

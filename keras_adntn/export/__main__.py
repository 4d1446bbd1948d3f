"""`python -m keras_adntn.export MODEL.keras OUT.tflite ...` (subprocess
route of `export_litert`; users call `keras-adntn export`)."""

from keras_adntn.export.remote import main

if __name__ == "__main__":
    main()

import sys

from keras_adntn_cli import main

sys.exit(main())

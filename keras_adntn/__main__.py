import sys

from keras_adntn.cli import main

sys.exit(main())

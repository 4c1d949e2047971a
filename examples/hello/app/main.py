import os

import six

print(f"{os.environ.get('GREETING')} (six {six.__version__})")

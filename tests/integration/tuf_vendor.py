"""python-tuf 5.1.0 and securesystemslib 1.2.0 as vendored beside the TUF conformance suite in the
workspace's shared/suites (CI has them there too), importable from the tests."""
import os
import sys

VENDOR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "../../../shared/suites/tuf/vendor"))


def load():
    # Debian 12's cryptography 38 names these PRIVATE_KEY_TYPES / PUBLIC_KEY_TYPES;
    # securesystemslib 1.2.0 imports the newer names (aliases only, as the suite's runner does).
    import cryptography.hazmat.primitives.asymmetric.types as types
    if not hasattr(types, "PrivateKeyTypes"):
        types.PrivateKeyTypes = types.PRIVATE_KEY_TYPES
    if not hasattr(types, "PublicKeyTypes"):
        types.PublicKeyTypes = types.PUBLIC_KEY_TYPES
    if VENDOR not in sys.path:
        sys.path.insert(0, VENDOR)

"""
osscallback: the application server for browser uploads to Alibaba Cloud OSS.

It hands browsers signed PostObject grants for one server-chosen object key,
and verifies the upload callbacks OSS sends back.
"""

from osscallback.callback import verify_callback

__version__ = "0.1.0"

__all__ = ["verify_callback", "__version__"]

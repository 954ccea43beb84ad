"""
The twistd plugin: C{twistd -n osscallback --port 1234}.

Only a declaration; L{osscallback.tap} is imported when the subcommand runs.
"""

from twisted.application.service import ServiceMaker

osscallback = ServiceMaker(
    "osscallback",
    "osscallback.tap",
    "Signed OSS upload grants and verified upload callbacks.",
    "osscallback",
)

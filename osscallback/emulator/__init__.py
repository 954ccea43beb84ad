"""
The embedded OSS: a bucket that lives inside this server in local mode.

It takes PostObject uploads at C{/oss/}, checks their policy and signature
as OSS does, keeps the objects on disk, answers like OSS, and sends signed
upload callbacks, so the whole upload loop runs on one machine.
"""

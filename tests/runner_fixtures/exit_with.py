"""Writes awkward stdout, then ends the way argv[1] says: none, zero, three or message.

The stdout (non-ASCII text, raw bytes, no final newline before exiting, an atexit print) must come
out of ``gradcheck run`` byte for byte as it comes out of ``python``; gradcheck writes only to stderr.
"""

import atexit
import sys

atexit.register(print, "[atexit handler ran]", end="")

print("naïve café ✓ → λ", flush=True)
print("a", "b", sep="\t", end="\r\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"raw bytes: \x00\x01\xfe\xff\n")
sys.stdout.buffer.flush()
sys.stdout.write("exiting; ")  # no newline, not flushed: the exit path must flush it
print("to stderr, before exiting", file=sys.stderr)

mode = sys.argv[1]
if mode == "none":
    sys.exit()
elif mode == "zero":
    sys.exit(0)
elif mode == "three":
    sys.exit(3)
elif mode == "message":
    sys.exit("training aborted: loss is nan")
print("unreachable")

"""What an image that cannot be read is, and how a client is told, alike in the API and in a worker."""

from PIL import Image, UnidentifiedImageError

# What opening or decoding bytes that are not a (whole) image raises. ImportError: in a worker, Ultralytics
# has replaced Image.open with one that retries a file PIL cannot identify with the pi-heif plugin, which
# is not installed.
UNREADABLE = (
    UnidentifiedImageError,
    ImportError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def unreadable(name: str, exc: BaseException) -> str:
    """Why `name` could not be read, in a few fixed words: PIL's messages carry the reader's repr
    (`<_io.BytesIO object at 0x...>`) or bytes of the file, and Ultralytics' a module name."""
    if isinstance(exc, UnidentifiedImageError | ImportError):
        why = "not an image (unknown format)"
    elif isinstance(exc, Image.DecompressionBombError):
        why = "not an image it will decode (too many pixels)"
    else:
        why = "a corrupt or truncated image"
    return f"{name}: {why}"

"""What an image that cannot be read is, and how a client is told, alike in the API and in a worker; and
the one header check the API makes before it keeps or forwards an uploaded image (inference, dataset
annotations), which refuses a header that declares a decompression bomb without decoding anything."""

import io

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
    return f"{name}: {why_unreadable(exc)}"


def why_unreadable(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError | ImportError):
        return "not an image (unknown format)"
    if isinstance(exc, Image.DecompressionBombError):
        return "not an image it will decode (too many pixels)"
    return "a corrupt or truncated image"


class ImageRefused(ValueError):
    """Why an upload is not taken; `too_large` tells a size refusal (413) from a non-image (422)."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) of an image file of at most `max_pixels` pixels, read from its header only; or
    ImageRefused."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except UNREADABLE as exc:
        too_large = isinstance(exc, Image.DecompressionBombError)
        raise ImageRefused(why_unreadable(exc), too_large=too_large) from exc
    if width * height > max_pixels:
        raise ImageRefused(f"{width}x{height} exceeds {max_pixels} pixels", too_large=True)
    return width, height

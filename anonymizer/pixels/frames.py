"""Frames of Pixel Data: decoded for text detection, and painted over where text was found.

Everything here goes frame by frame through pydicom's decoders
(:meth:`pydicom.pixels.decoders.base.Decoder.iter_array`), so at most one decoded frame is
held at a time. The decoders are handed the Pixel Data value itself (bytes, or a stream
positioned on it when the reader left it in the file), together with the Image Pixel
elements read from a separate view of the dataset: pydicom stores what it decodes back
into the dataset it reads, and the splice writer copies only elements still as read.

Memory: decoding holds one frame. A value the reader left in the file (a file over
``LARGE_FILE``) is read from there frame by frame for native data; pydicom reads an
encapsulated one fragment by fragment. :func:`blank_regions` builds the new native Pixel
Data frame by frame: in memory up to :data:`SPILL_ABOVE` bytes, above that in an
anonymous scratch file that the Pixel Data element then holds as its (buffered) value,
which the writers copy out in chunks. Painting a huge multi-frame file thus holds one
frame, whatever its number of frames.

Needs the ``pixels`` extra (numpy and the pylibjpeg decoders); without it every function
that decodes raises :class:`~anonymizer.errors.MissingExtraError`.
"""

from __future__ import annotations

import importlib
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, as_pixel_options, convert_color_space, get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)

from anonymizer.elements import remove, store, stored, text_value
from anonymizer.errors import MissingExtraError, PixelDataError
from anonymizer.reasons import exception_class
from anonymizer.tags import ITEM_TAG, PIXEL_DATA, SEQUENCE_DELIMITER, UNDEFINED_LENGTH

if TYPE_CHECKING:
    import numpy

EXTRA = "pixels"
#: Syntaxes whose decoders the ``pixels`` extra installs (pylibjpeg and its plugins).
_EXTRA_SYNTAXES = frozenset({*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes,
                             *JPEG2000TransferSyntaxes, *RLETransferSyntaxes})
#: Lossy JPEG stores colour as YCbCr only because the codec compresses it better: the
#: decoded image is RGB (pydicom converts it), as any viewer shows it.
_TO_RGB_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit})
#: Syntaxes that are always lossy, with their Lossy Image Compression Method (PS3.3
#: C.7.6.1.1.5.1). JPEG 2000 and HTJ2K may be either: their history is left as the
#: dataset states it.
_LOSSY_METHODS = {JPEGBaseline8Bit: "ISO_10918_1", JPEGExtended12Bit: "ISO_10918_1",
                  JPEGLSNearLossless: "ISO_14495_1"}
_EXTENDED_OFFSET_TABLE = (0x7FE00001, 0x7FE00002)
_SUPPORTED_BITS = (8, 16)
#: Painted Pixel Data larger than this goes to a scratch file rather than memory.
SPILL_ABOVE = 64 << 20
_ITEM_HEADER = struct.Struct("<4sI")


@dataclass(frozen=True)
class Box:
    """A rectangle in one frame, pixel coordinates, x1/y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box with negative size: {self}")

    def clipped(self, margin: int, rows: int, columns: int) -> Box | None:
        """The box grown by ``margin`` on every side and clipped to a frame, or None if
        nothing of it lies inside the frame."""
        x0, y0 = max(self.x0 - margin, 0), max(self.y0 - margin, 0)
        x1, y1 = min(self.x1 + margin, columns), min(self.y1 + margin, rows)
        return Box(x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _numpy() -> Any:
    """numpy, or the one-line error naming the extra that installs it."""
    try:
        import numpy
    except ImportError:
        raise MissingExtraError(EXTRA, "pixel processing") from None
    return numpy


def require_decoders() -> None:
    """Raise :class:`MissingExtraError` unless numpy and the pylibjpeg plugins (JPEG,
    JPEG-LS, JPEG 2000, RLE) are installed: checked once when a run starts."""
    _numpy()
    for module in ("pylibjpeg", "libjpeg", "openjpeg", "rle"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(EXTRA, "decoding compressed pixel data") from None


def frame_count(ds: Dataset) -> int:
    """The number of frames of ``ds``'s Pixel Data (0 without Pixel Data).

    Raises
    ------
    PixelDataError
        When Number of Frames is not a positive integer: how many frames the data holds
        is then unknown, and guessing could leave frames unblanked.
    """
    if PIXEL_DATA not in stored(ds):
        return 0
    text = text_value(ds, "NumberOfFrames").strip()
    if not text:
        return 1
    try:
        count = int(text)
    except ValueError:
        raise PixelDataError("Number of Frames is not an integer") from None
    if count < 1:
        raise PixelDataError(f"Number of Frames is {count}")
    return count


def sampled_frames(count: int, every: int) -> list[int]:
    """The first, the last and every ``every``-th frame of ``count`` (0-based, sorted).

    Raises
    ------
    ValueError
        When ``every`` is less than 1.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    if count < 1:
        return []
    return sorted({*range(0, count, every), count - 1})


def _syntax(ds: Dataset) -> UID:
    """The transfer syntax the Pixel Data is encoded in (as the writer works it out)."""
    meta = getattr(ds, "file_meta", None)
    syntax = text_value(meta, "TransferSyntaxUID") if meta is not None else ""
    if syntax:
        return UID(syntax)
    implicit, little = ds.original_encoding
    if implicit is None or implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


#: Photometric interpretations of the standard (PS3.3 C.7.6.3.1.2): the only ones a
#: failure reason names (anything else is a value of the file).
_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "HSV",
                           "ARGB", "CMYK", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422",
                           "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB"})


def _syntax_label(syntax: UID) -> str:
    """A transfer syntax as a failure reason may name it: the standard's name, else a
    fixed phrase (the UID is the file's own text)."""
    return syntax.name if syntax.is_transfer_syntax else "an unknown transfer syntax"


def _photometric_label(photometric: str) -> str:
    return photometric if photometric in _PHOTOMETRICS else "(not a standard term)"


def _decoder(syntax: UID) -> Any:
    """pydicom's decoder for ``syntax``, checked to be usable."""
    _numpy()
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise PixelDataError(f"pixel data in {_syntax_label(syntax)} cannot be decoded") \
            from None
    if not decoder.is_available:
        if syntax in _EXTRA_SYNTAXES:
            raise MissingExtraError(EXTRA, f"decoding {syntax.name}")
        raise PixelDataError(f"no decoder for pixel data in {_syntax_label(syntax)}")
    return decoder


def _pixel_view(ds: Dataset) -> Dataset:
    """A dataset holding ``ds``'s Image Pixel elements (group 0028, the same objects).

    pydicom reads these through ``Dataset.__getitem__``, which stores the decoded element
    in the dataset: done on this view, the elements of ``ds`` stay as read.
    """
    view = Dataset()
    view._dict.update((tag, elem) for tag, elem in stored(ds).items() if tag >> 16 == 0x0028)
    view.set_original_encoding(*ds.original_encoding, ds.original_character_set)
    return view


def _integer(view: Dataset, keyword: str, default: int | None = None) -> int:
    try:
        value = view[keyword].value if keyword in view else default
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PixelDataError(f"{keyword} missing or not a number") from None


def _check_image(view: Dataset) -> None:
    """Refuse what is not handled here, before anything is decoded."""
    bits = _integer(view, "BitsAllocated")
    if bits not in _SUPPORTED_BITS:
        raise PixelDataError(f"Bits Allocated {bits} is not supported (only 8 or 16)")
    samples = _integer(view, "SamplesPerPixel", 1)
    if samples not in (1, 3):
        raise PixelDataError(f"Samples per Pixel {samples} is not supported")
    stored_bits = _integer(view, "BitsStored", bits)
    if not 1 <= stored_bits <= bits:
        raise PixelDataError(f"Bits Stored {stored_bits} does not fit Bits Allocated {bits}")


@contextmanager
def _value_source(ds: Dataset) -> Iterator[bytes | BinaryIO]:
    """The Pixel Data value: its bytes, or a stream positioned at its start when the
    reader left it in the file (the scanner's buffer, or a large file on disk)."""
    elem = stored(ds).get(PIXEL_DATA)  # type: ignore[call-overload]
    if elem is None:
        raise PixelDataError("no Pixel Data")
    value = elem.value
    if isinstance(value, bytes | bytearray):
        yield bytes(value)
        return
    tell = getattr(elem, "value_tell", None)
    if value is None and isinstance(elem, RawDataElement) and tell is not None:
        buffer = getattr(ds, "buffer", None)
        if buffer is not None and not getattr(buffer, "closed", False):
            position = buffer.tell()
            buffer.seek(tell)
            try:
                yield buffer
            finally:
                buffer.seek(position)
            return
        filename = getattr(ds, "filename", None)
        if isinstance(filename, str):
            with open(filename, "rb") as handle:
                handle.seek(tell)
                yield handle
            return
    raise PixelDataError("Pixel Data value is not available to decode")


def _decoded(ds: Dataset, indices: Sequence[int], raw: bool,
             ) -> Iterator[tuple[int, numpy.ndarray, dict[str, Any]]]:
    """Decode the frames ``indices`` of ``ds`` one at a time.

    Yields
    ------
    (int, numpy.ndarray, dict)
        The index, the frame (rows, columns[, samples]) and pydicom's Image Pixel
        properties of it (``photometric_interpretation`` etc. as decoded).
    """
    syntax = _syntax(ds)
    decoder = _decoder(syntax)
    count = frame_count(ds)
    for index in indices:
        if not 0 <= index < count:
            raise PixelDataError(f"frame {index} does not exist (the data has {count})")
    if not indices:
        return  # pydicom reads an empty selection as "every frame"
    view = _pixel_view(ds)
    _check_image(view)
    try:
        # what pydicom takes from a dataset's Pixel Data element itself; the VR tells
        # whether 8-bit big endian data was written as OW (its byte pairs swapped)
        vr = stored(ds)[PIXEL_DATA].VR or "OW"  # type: ignore[index]
        options = as_pixel_options(view, number_of_frames=count, pixel_keyword="PixelData",
                                   pixel_vr=vr)
    except Exception as exc:
        raise PixelDataError(f"Image Pixel elements unreadable: {exception_class(exc)}") from exc
    rows, columns = _integer(view, "Rows"), _integer(view, "Columns")
    with _value_source(ds) as source:
        frames = _iter_array(decoder, source, syntax, indices, raw, options)
        for index in indices:
            try:
                arr, properties = next(frames)
            except StopIteration:
                raise PixelDataError(f"pixel data ends before frame {index}") from None
            except (MissingExtraError, PixelDataError):
                raise
            except Exception as exc:  # any decoder's failure: the file fails, in one line
                raise PixelDataError(f"pixel data in {_syntax_label(syntax)} cannot be "
                                     f"decoded: {exception_class(exc)}") from exc
            if arr.shape[:2] != (rows, columns):
                raise PixelDataError(f"frame {index} decoded as {arr.shape}, not "
                                     f"{rows}x{columns}")
            yield index, arr, properties


def _iter_array(decoder: Any, source: bytes | BinaryIO, syntax: UID, indices: Sequence[int],
                raw: bool, options: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """pydicom's frames ``indices`` of ``source``, one call per frame for native
    YBR_FULL_422: once pydicom has expanded a frame of it, it takes the data for YBR_FULL
    (3 samples a pixel, not 2) and reads every later frame from the wrong place."""
    if syntax.is_encapsulated or options.get("photometric_interpretation") != "YBR_FULL_422":
        return decoder.iter_array(source, indices=list(indices), raw=raw, **options)
    return (frame for index in indices
            for frame in decoder.iter_array(source, indices=[index], raw=raw, **options))


def _palette(view: Dataset, bits_stored: int) -> tuple[numpy.ndarray, int]:
    """The palette as an 8-bit RGB table indexed by stored value, and the index whose
    colour is darkest (lowest luma, BT.601 weights)."""
    np = _numpy()
    values = np.arange(1 << bits_stored, dtype=np.uint16 if bits_stored > 8 else np.uint8)
    try:
        table = apply_color_lut(values, view)
    except Exception as exc:
        raise PixelDataError(f"palette unreadable: {exception_class(exc)}") from exc
    darkest = int(np.argmin(table.astype(np.float64) @ np.array([0.299, 0.587, 0.114])))
    if table.dtype != np.uint8:
        # A 16-bit palette whose entries are all below 256 holds 8-bit colours (a common
        # writer's mistake): scaling it down would show the image black.
        table = table.astype(np.uint8) if table.max() < 256 else (table >> 8).astype(np.uint8)
    return table, darkest


def _scaled(arr: numpy.ndarray) -> numpy.ndarray:
    """``arr`` scaled to 0-255 from its own minimum and maximum."""
    np = _numpy()
    low, high = arr.min(), arr.max()
    if high == low:
        return np.zeros(arr.shape, np.uint8)
    scaled = (arr.astype(np.float32) - np.float32(low)) * np.float32(255 / (float(high) - low))
    return np.rint(scaled).astype(np.uint8)


def display_frames(ds: Dataset, indices: Sequence[int],
                   ) -> Iterator[tuple[int, numpy.ndarray]]:
    """Frames as 8-bit images for text detection and thumbnails, one at a time.

    Text drawn into an image is usually at its brightest value: MONOCHROME1 is inverted
    so that text reads light on dark as in MONOCHROME2; PALETTE COLOR is looked up;
    YBR is converted to RGB (from its top 8 bits when wider); anything else but unsigned
    8-bit is scaled to 0-255 from the frame's own minimum and maximum.

    Parameters
    ----------
    ds : Dataset
        A dataset with Pixel Data (not changed).
    indices : sequence of int
        0-based frame numbers, in the order to yield them.

    Yields
    ------
    (int, numpy.ndarray)
        The frame number and its image: uint8, (rows, columns) grey or
        (rows, columns, 3) RGB.

    Raises
    ------
    PixelDataError
        When the pixel data cannot be decoded, or a frame does not exist.
    MissingExtraError
        When the ``pixels`` extra is not installed.
    """
    np = _numpy()
    view = _pixel_view(ds)
    palette: numpy.ndarray | None = None
    # pydicom converts YBR to RGB for 8-bit samples only: wider ones are decoded as
    # stored and converted below
    wide_ybr = _integer(view, "BitsAllocated") > 8 and text_value(
        view, "PhotometricInterpretation").strip() in ("YBR_FULL", "YBR_FULL_422")
    # each frame once: pydicom reads a repeated index of YBR_FULL_422 data wrongly
    for index, arr, properties in _decoded(ds, list(dict.fromkeys(indices)), raw=wide_ybr):
        photometric = properties["photometric_interpretation"]
        if wide_ybr and photometric in ("YBR_FULL", "YBR_FULL_422"):
            top_bits = (arr >> max(int(properties["bits_stored"]) - 8, 0)).astype(np.uint8)
            image = convert_color_space(top_bits, "YBR_FULL", "RGB")
        elif photometric == "PALETTE COLOR":
            if palette is None:
                palette = _palette(view, int(properties["bits_stored"]))[0]
            image = palette[np.clip(arr, 0, len(palette) - 1)]
        elif photometric in ("MONOCHROME1", "MONOCHROME2", "RGB"):
            image = arr if arr.dtype == np.uint8 else _scaled(arr)
            if photometric == "MONOCHROME1":
                image = 255 - image
        else:
            raise PixelDataError(f"photometric interpretation "
                                 f"{_photometric_label(photometric)} is not supported")
        yield index, np.ascontiguousarray(image, dtype=np.uint8)


def _darkest(photometric: str, properties: Mapping[str, Any], view: Dataset) -> Any:
    """The stored value (a sample tuple for colour) that shows darkest."""
    bits = int(properties["bits_stored"])
    signed = int(properties.get("pixel_representation", 0)) == 1
    low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
    if photometric == "MONOCHROME2":
        return low
    if photometric == "MONOCHROME1":
        return high
    if photometric == "RGB":
        return (0, 0, 0)
    if photometric == "YBR_FULL":
        return (0, 1 << bits - 1, 1 << bits - 1)  # no luma, neutral chroma
    if photometric == "PALETTE COLOR":
        return _palette(view, bits)[1]
    raise PixelDataError(f"photometric interpretation {_photometric_label(photometric)} "
                         "cannot be blanked")


def _stored_bytes(arr: numpy.ndarray, properties: Mapping[str, Any], little: bool) -> bytes:
    """A decoded frame as native bytes (interleaved samples, in the byte order ``little``
    says), the bits above Bits Stored zero."""
    np = _numpy()
    size = int(properties["bits_allocated"]) // 8
    bits = int(properties["bits_stored"])
    # two's complement of the signed values, cut to Bits Stored: the form pydicom and any
    # reader sign-extend back to the same values
    unsigned = arr.astype(f"=i{size}").view(f"=u{size}") if arr.dtype.kind == "i" \
        else arr.astype(f"=u{size}")
    if bits < size * 8:
        unsigned &= np.array((1 << bits) - 1, dtype=unsigned.dtype)
    # the byte order last: numpy computes (and masks) in the machine's own order
    return unsigned.astype(f"{'<' if little else '>'}u{size}").tobytes()


def _encapsulated_length(source: bytes | BinaryIO) -> int | None:
    """The length of an encapsulated value (its items), for the compression ratio."""
    if isinstance(source, bytes):
        return len(source)
    start = source.tell()
    try:
        length = 0
        while True:
            header = source.read(8)
            if len(header) < 8:
                return None
            if header == SEQUENCE_DELIMITER:
                return length
            tag, size = _ITEM_HEADER.unpack(header)
            if tag != ITEM_TAG or size == UNDEFINED_LENGTH:
                return None
            source.seek(size, 1)
            length += 8 + size
    finally:
        source.seek(start)


def _set(ds: Dataset, keyword: str, value: Any) -> None:
    """Set an attribute as a new element (recorded: the writer encodes it, not copies it)."""
    store(ds, DataElement(keyword, _VR[keyword], value))


_VR = {"PhotometricInterpretation": "CS", "PlanarConfiguration": "US", "BitsStored": "US",
       "HighBit": "US", "PixelRepresentation": "US", "LossyImageCompression": "CS",
       "LossyImageCompressionMethod": "CS", "LossyImageCompressionRatio": "DS",
       "BurnedInAnnotation": "CS", "TransferSyntaxUID": "UI"}


def _record_lossy(ds: Dataset, syntax: UID, encoded: int | None, decoded: int) -> None:
    """Keep the lossy history of an image decoded from a lossy syntax (PS3.3
    C.7.6.1.1.5: once lossy, always "01", with each compression's ratio and method)."""
    method = _LOSSY_METHODS.get(syntax)
    if method is None:
        return  # lossless or possibly lossless: the dataset's own statement stands
    if text_value(ds, "LossyImageCompression") != "01":
        _set(ds, "LossyImageCompression", "01")
    # Both are required with "01"; one the dataset has is kept (it may record earlier
    # compressions too), one it lacks is this syntax's (the latest compression).
    if not text_value(ds, "LossyImageCompressionMethod"):
        _set(ds, "LossyImageCompressionMethod", method)
    if not text_value(ds, "LossyImageCompressionRatio") and encoded:
        _set(ds, "LossyImageCompressionRatio", f"{decoded / encoded:.2f}"[:16])


def paints_anything(ds: Dataset, boxes: Mapping[int, Sequence[Box]], margin: int = 0) -> bool:
    """Whether :func:`blank_regions` would paint at least one of ``boxes`` (one lies at
    least partly inside the frame)."""
    view = _pixel_view(ds)
    rows, columns = _integer(view, "Rows"), _integer(view, "Columns")
    return any(box.clipped(margin, rows, columns) is not None
               for frame_boxes in boxes.values() for box in frame_boxes)


class _PaintedValue:
    """The new native Pixel Data value, written frame by frame: in memory, or in an
    anonymous scratch file (no name: nothing is left behind if the process dies) when
    it will be larger than :data:`SPILL_ABOVE`."""

    def __init__(self, expected: int, scratch_dir: str | os.PathLike[str] | None):
        self._file: BinaryIO | None = None
        if expected > SPILL_ABOVE:
            self._file = tempfile.TemporaryFile(dir=scratch_dir)  # noqa: SIM115
        self._parts: list[bytes] = []
        self.length = 0

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
        else:
            self._parts.append(data)
        self.length += len(data)

    def value(self) -> bytes | BinaryIO:
        """The value, padded to even length (PS3.5 7.1.1): bytes, or the scratch file
        positioned at its start."""
        if self.length % 2:
            self.write(b"\x00")
        if self._file is None:
            data = b"".join(self._parts)
            self._parts.clear()
            return data
        self._file.flush()
        self._file.seek(0)
        return self._file

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        self._parts.clear()


def blank_regions(ds: Dataset, boxes: Mapping[int, Sequence[Box]], margin: int = 0,
                  scratch_dir: str | os.PathLike[str] | None = None) -> int:
    """Paint ``boxes`` over the pixels with the darkest value, and store the pixel data
    native (uncompressed): in the input's transfer syntax if that was native (big endian
    included), else in Explicit VR Little Endian.

    Every frame is decoded, painted and re-encoded in turn; all frames are kept and every
    pixel outside the boxes keeps its value. Native input keeps its stored colour space
    (YBR_FULL_422 becomes YBR_FULL, as decoding removes the subsampling); compressed
    input takes the colour space the decoder gives (RGB for lossy JPEG); the Image Pixel
    elements are updated to match. A lossy input keeps Lossy Image Compression "01" and
    gains its method and ratio when it had none; Burned In Annotation becomes "NO".

    Parameters
    ----------
    ds : Dataset
        A dataset with Pixel Data; changed in place.
    boxes : mapping of int to sequence of Box
        The boxes to paint, by 0-based frame number.
    margin : int
        Pixels added on every side of every box (boxes are clipped to the frame).
    scratch_dir : path, optional
        Where Pixel Data over :data:`SPILL_ABOVE` bytes is built (an anonymous file;
        the system's temporary folder by default). Pixel Data then holds that open file
        as a buffered value until the dataset is written and released.

    Returns
    -------
    int
        The number of boxes painted (a box wholly outside its frame is not).

    Raises
    ------
    PixelDataError
        When the pixel data cannot be decoded or painted, or a frame does not exist;
        ``ds`` is then unchanged.
    MissingExtraError
        When the ``pixels`` extra is not installed.
    ValueError
        When ``margin`` is negative.
    """
    if margin < 0:
        raise ValueError(f"margin must not be negative, not {margin}")
    syntax = _syntax(ds)
    count = frame_count(ds)
    for index in boxes:
        if not 0 <= index < count:
            raise PixelDataError(f"frame {index} does not exist (the data has {count})")
    view = _pixel_view(ds)
    rows, columns = _integer(view, "Rows"), _integer(view, "Columns")
    # native input keeps its transfer syntax (the rest of the dataset is encoded in it:
    # pydicom will not write big endian elements as little endian), encapsulated input
    # becomes Explicit VR Little Endian
    little = syntax.is_encapsulated or syntax.is_little_endian
    expected = (rows * columns * _integer(view, "SamplesPerPixel", 1) * count
                * (_integer(view, "BitsAllocated") // 8))
    painted_value = _PaintedValue(expected, scratch_dir)
    try:
        first, painted = _paint_frames(ds, syntax, count, boxes, margin, little, view,
                                       painted_value)
        decoded_size = painted_value.length
        encoded = None
        if syntax.is_encapsulated:
            with _value_source(ds) as source:
                encoded = _encapsulated_length(source)
        value = painted_value.value()
    except BaseException:
        painted_value.discard()
        raise
    _store(ds, syntax, value, first, view)
    if syntax.is_encapsulated:
        _record_lossy(ds, syntax, encoded, decoded_size)
    _set(ds, "BurnedInAnnotation", "NO")
    return painted


def _paint_frames(ds: Dataset, syntax: UID, count: int, boxes: Mapping[int, Sequence[Box]],
                  margin: int, little: bool, view: Dataset, out: _PaintedValue,
                  ) -> tuple[dict[str, Any], int]:
    """Decode, paint and write each frame in turn; the first frame's properties and the
    number of boxes painted."""
    rows, columns = _integer(view, "Rows"), _integer(view, "Columns")
    first: dict[str, Any] | None = None
    darkest: Any = None
    painted = 0
    for index, arr, properties in _decoded(ds, range(count), raw=syntax not in _TO_RGB_SYNTAXES):
        if first is None:
            first = properties
            darkest = _darkest(_blank_photometric(properties), properties, view)
        elif properties != first:
            raise PixelDataError(f"frame {index} decodes unlike frame 0")
        for box in boxes.get(index, ()):
            region = box.clipped(margin, rows, columns)
            if region is not None:
                arr[region.y0:region.y1, region.x0:region.x1] = darkest
                painted += 1
        out.write(_stored_bytes(arr, properties, little))
        del arr  # one decoded frame at a time
    assert first is not None  # frame_count is at least 1 with Pixel Data
    return first, painted


def _blank_photometric(properties: Mapping[str, Any]) -> str:
    """The photometric interpretation of a decoded frame as stored natively: decoding
    removes YBR_FULL_422's subsampling, which leaves YBR_FULL."""
    photometric = str(properties["photometric_interpretation"])
    return "YBR_FULL" if photometric == "YBR_FULL_422" else photometric


def _store(ds: Dataset, syntax: UID, data: bytes | BinaryIO, properties: Mapping[str, Any],
           view: Dataset) -> None:
    """Replace the Pixel Data of ``ds`` by native ``data`` (bytes, or a file holding
    them) and make the Image Pixel elements and the transfer syntax describe it."""
    bits = int(properties["bits_allocated"])
    # OB for 8-bit: OW would have a big endian writer swap the bytes of each pair
    store(ds, DataElement(PIXEL_DATA, "OB" if bits == 8 else "OW", data))
    for tag in _EXTENDED_OFFSET_TABLE:  # offsets into the encapsulated value, now gone
        if tag in ds:
            remove(ds, tag)
    if syntax.is_encapsulated:
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = FileMetaDataset()
        store(ds.file_meta, DataElement(0x00020010, "UI", ExplicitVRLittleEndian))
    photometric = _blank_photometric(properties)
    if text_value(ds, "PhotometricInterpretation") != photometric:
        _set(ds, "PhotometricInterpretation", photometric)
    if int(properties["samples_per_pixel"]) > 1 and _integer(view, "PlanarConfiguration",
                                                             -1) != 0:
        _set(ds, "PlanarConfiguration", 0)  # frames are written interleaved
    bits_stored = int(properties["bits_stored"])
    if _integer(view, "BitsStored", bits) != bits_stored:
        _set(ds, "BitsStored", bits_stored)
        _set(ds, "HighBit", bits_stored - 1)
    representation = int(properties.get("pixel_representation", 0))
    if _integer(view, "PixelRepresentation", 0) != representation:
        _set(ds, "PixelRepresentation", representation)

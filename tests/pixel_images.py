"""Generated images for the pixel tests: backgrounds without text, text drawn by Pillow,
and DICOM files of every photometric interpretation, bit depth and transfer syntax that
an encoder installed with the ``test`` extra writes.

An image is composed once as 8-bit grey (a background, then text blended in by its
anti-aliased coverage) and stored in each photometric interpretation from there, so the
same picture shows through every encoding. Compressed files are built from the native
one: RLE, JPEG-LS and JPEG 2000 by pydicom's encoders (pyjpegls, pylibjpeg-openjpeg),
JPEG baseline by Pillow, JPEG lossless (process 14, selection value 1) by
:func:`jpeg_lossless` here, as no well-kept Python package writes it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE = "1.2.840.10008.5.1.4.1.1.3.1"
NAME, MRN = "DOE^JOHN", "12345678"


# ------------------------------------------------------------------ backgrounds, text
def speckle(rows: int, columns: int, seed: int = 7) -> np.ndarray:
    """Speckle and a smooth blob, like an ultrasound sector (no text), 20-200."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    blob = 90 * np.exp(-(((x - columns / 2) / (columns / 4)) ** 2
                         + ((y - rows / 1.8) / (rows / 4)) ** 2))
    return np.clip(blob + rng.normal(0, 12, (rows, columns)) + 20, 0, 200).astype(np.uint8)


def gradient(rows: int, columns: int) -> np.ndarray:
    """A horizontal ramp 0-140 (no text)."""
    return np.linspace(0, 140, columns, dtype=np.float64)[None, :].repeat(rows, 0) \
        .astype(np.uint8)


def noise(rows: int, columns: int, seed: int = 1) -> np.ndarray:
    """Gaussian noise around 50 (no text)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(50, 20, (rows, columns)), 0, 255).astype(np.uint8)


def font(size: int | None) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Fonts Pillow itself ships: Aileron (FreeType) at ``size``, or its ~11 px bitmap font."""
    if size is None:
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default(size=size)


def ink(shape: tuple[int, int], lines: list[tuple[int, int, str]],
        size: int | None = 18) -> np.ndarray:
    """The coverage (0-255) of ``lines`` (x, y, text) drawn white in a frame of ``shape``."""
    canvas = Image.new("L", shape[::-1], 0)
    draw = ImageDraw.Draw(canvas)
    for x, y, text in lines:
        draw.text((x, y), text, fill=255, font=font(size))
    return np.asarray(canvas)


def blend(background: np.ndarray, coverage: np.ndarray, fill: int = 255) -> np.ndarray:
    """``background`` with ``fill`` blended in by ``coverage`` (0-255), as a renderer
    draws anti-aliased text."""
    alpha = coverage.astype(np.float64) / 255
    if background.ndim > coverage.ndim:  # colour samples
        alpha = alpha[..., None]
    return (background * (1 - alpha) + fill * alpha).round().astype(np.uint8)


# ------------------------------------------------------------------ stored values
#: Photometric interpretations and bit depths; for 16 bits, the Bits Stored and Pixel
#: Representation used (a CT-like signed MONOCHROME2, a CR-like 12-bit MONOCHROME1).
BITS_STORED = {("MONOCHROME2", 16): (16, 1), ("MONOCHROME1", 16): (12, 0)}
#: A palette whose darkest entry is not index 0: blanking must look the colour up.
PALETTE_SHIFT = 5
#: Colour of the backgrounds of colour images (text is drawn white over it).
TINT = np.array([1.0, 0.8, 0.6])


@dataclass(frozen=True)
class Pixels:
    """The stored values of one image: ``frames`` (frames, rows, columns[, 3]) in the
    dtype pydicom decodes them to, and the elements that describe them."""

    frames: np.ndarray
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    palette: tuple[list[int], bytes] | None = None  # descriptor, 16-bit entries

    @property
    def samples(self) -> int:
        return 3 if self.frames.ndim == 4 else 1


def _rgb(grey: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """A tinted colour image of ``grey``'s background with its text white."""
    background = np.clip(grey[..., None] * TINT, 0, 255)
    alpha = coverage.astype(np.float64)[..., None] / 255
    return (background * (1 - alpha) + 255 * alpha).round().astype(np.uint8)


def _ybr16(rgb: np.ndarray) -> np.ndarray:
    """RGB (16-bit) to YBR_FULL (PS3.3 C.7.6.3.1.2, offsets for 16 bits)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 32768
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 32768
    return np.clip(np.stack([y, cb, cr], axis=-1).round(), 0, 65535).astype(np.uint16)


def stored_values(grey: np.ndarray, coverage: np.ndarray, photometric: str,
                  bits: int) -> Pixels:
    """Store frames of 8-bit grey (text included) and the text's coverage as
    ``photometric`` at ``bits`` allocated: the text is always what shows brightest."""
    shown = blend(grey, coverage)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if bits == 8:
            values = shown if photometric == "MONOCHROME2" else 255 - shown
            return Pixels(values, photometric, 8, 8, False)
        stored, representation = BITS_STORED[(photometric, bits)]
        if photometric == "MONOCHROME2":  # -1024 .. 3056, like CT numbers
            values = (shown.astype(np.int32) * 16 - 1024).astype(np.int16)
        else:  # 15 .. 4095: low values show bright
            values = (4095 - shown.astype(np.int32) * 16).astype(np.uint16)
        return Pixels(values, photometric, 16, stored, bool(representation))
    if photometric == "PALETTE COLOR":
        entries = 1 << bits  # 8 bits: 256 entries; 16 bits: 65536 (descriptor 0)
        levels = shown.astype(np.int64) * (entries - 1) // 255
        index = (levels + PALETTE_SHIFT) % entries
        ramp = (np.arange(entries) - PALETTE_SHIFT) % entries  # index -> level
        scale = 65535 / (entries - 1)
        luts = [np.clip(ramp * scale * t, 0, 65535).round().astype("<u2") for t in TINT]
        descriptor = [entries if entries < 65536 else 0, 0, 16]
        dtype = np.uint8 if bits == 8 else np.uint16
        return Pixels(index.astype(dtype), photometric, bits, bits, False,
                      (descriptor, b"".join(lut.tobytes() for lut in luts)))
    rgb = _rgb(grey, coverage)
    if bits == 16:
        rgb = rgb.astype(np.uint16) * 257
    if photometric in ("RGB", "YBR_RCT", "YBR_ICT"):
        # YBR_RCT and YBR_ICT: RGB that the JPEG 2000 encoder turns into YBR (its
        # multiple-component transform), as most writers store colour in JPEG 2000
        return Pixels(rgb, photometric, bits, bits, False)
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        ybr = convert_color_space(rgb, "RGB", "YBR_FULL") if bits == 8 else _ybr16(rgb)
        if photometric == "YBR_FULL_422":  # the chroma of each pair of pixels averaged
            pairs = ybr[..., 1:].reshape(*ybr.shape[:-2], ybr.shape[-2] // 2, 2, 2)
            mean = (pairs.astype(np.int32).sum(axis=-2) + 1) // 2
            ybr[..., 1:] = np.repeat(mean, 2, axis=-2).astype(ybr.dtype)
        return Pixels(ybr, photometric, bits, bits, False)
    raise ValueError(f"no stored form for {photometric}")


def _native_bytes(pixels: Pixels, big_endian: bool = False) -> bytes:
    """The frames as native Pixel Data (YBR_FULL_422 subsampled: Y1 Y2 Cb Cr)."""
    values = pixels.frames
    if pixels.photometric == "YBR_FULL_422":
        y = values[..., 0].reshape(*values.shape[:-2], values.shape[-2] // 2, 2)
        chroma = values[..., ::2, 1:]  # equal within each pair
        values = np.concatenate([y, chroma], axis=-1)
    size = pixels.bits_allocated // 8
    if size == 1:
        return values.astype(np.uint8).tobytes()
    unsigned = values.astype(f"=i{size}").view(f"=u{size}") if values.dtype.kind == "i" \
        else values
    return unsigned.astype(f"{'>' if big_endian else '<'}u{size}").tobytes()


# ------------------------------------------------------------------ datasets
def dataset(pixels: Pixels, **values: object) -> Dataset:
    """A native (Explicit VR Little Endian) ultrasound dataset holding ``pixels``, with
    the patient DOE^JOHN / 12345678; ``values`` set or (None) remove attributes."""
    count, rows, columns = pixels.frames.shape[:3]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = US_MULTIFRAME_IMAGE if count > 1 else US_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1234.1.5"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1234.2.5"
    ds.Modality = "US"
    ds.PatientName = NAME
    ds.PatientID = MRN
    ds.PatientBirthDate = "19650412"
    ds.StudyDate = "20190305"
    ds.Manufacturer = "ACME"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = pixels.samples
    if pixels.samples == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = pixels.photometric
    ds.BitsAllocated = pixels.bits_allocated
    ds.BitsStored = pixels.bits_stored
    ds.HighBit = pixels.bits_stored - 1
    ds.PixelRepresentation = int(pixels.signed)
    if count > 1:
        ds.NumberOfFrames = count
    if pixels.palette is not None:
        descriptor, data = pixels.palette
        length = len(data) // 3
        for colour, part in zip(("Red", "Green", "Blue"), range(3), strict=True):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", descriptor)
            ds[f"{colour}PaletteColorLookupTableData"] = DataElement(
                f"{colour}PaletteColorLookupTableData", "OW",
                data[part * length:(part + 1) * length])
    ds.PixelData = _native_bytes(pixels)
    ds["PixelData"].VR = "OB" if pixels.bits_allocated == 8 else "OW"
    for keyword, value in values.items():
        if value is None:
            if keyword in ds:
                del ds[keyword]
        else:
            setattr(ds, keyword, value)
    return ds


def grey_dataset(frames: np.ndarray, **values: object) -> Dataset:
    """:func:`dataset` of 8-bit MONOCHROME2 frames, (rows, columns) or
    (frames, rows, columns)."""
    frames = frames if frames.ndim == 3 else frames[None]
    return dataset(Pixels(frames, "MONOCHROME2", 8, 8, False), **values)


# ------------------------------------------------------------------ encoders
#: Transfer syntaxes of the matrix: short name -> (UID, lossy).
SYNTAXES: dict[str, tuple[UID, bool]] = {
    "explicit": (ExplicitVRLittleEndian, False),
    "implicit": (ImplicitVRLittleEndian, False),
    "bigendian": (ExplicitVRBigEndian, False),
    "rle": (RLELossless, False),
    "jpegbaseline": (JPEGBaseline8Bit, True),
    "jpeglossless": (JPEGLosslessSV1, False),
    "jpegls": (JPEGLSLossless, False),
    "jpegls_near": (JPEGLSNearLossless, True),
    "j2k": (JPEG2000Lossless, False),
    "j2k_lossy": (JPEG2000, True),
}
#: Lossy Image Compression Method of each lossy syntax (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHODS = {JPEGBaseline8Bit: "ISO_10918_1", JPEGLSNearLossless: "ISO_14495_1",
                 JPEG2000: "ISO_15444_1"}


def encode(ds: Dataset, pixels: Pixels, syntax: str) -> Dataset:
    """``ds`` (native, from :func:`dataset`) in the transfer syntax ``syntax`` (a key of
    SYNTAXES), changed in place. Lossy syntaxes record their history as a conformant
    writer does (Lossy Image Compression 01, its method and ratio)."""
    uid, lossy = SYNTAXES[syntax]
    native_size = len(ds.PixelData)
    if uid == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = uid
    elif uid == ExplicitVRBigEndian:
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = _native_bytes(pixels, big_endian=True)
        ds["PixelData"].VR = "OB" if pixels.bits_allocated == 8 else "OW"
    elif uid == JPEGBaseline8Bit:
        _set_encapsulated(ds, uid, [_jpeg_baseline(frame, pixels.photometric)
                                    for frame in pixels.frames])
    elif uid == JPEGLosslessSV1:
        _set_encapsulated(ds, uid, [jpeg_lossless(frame, pixels.bits_stored)
                                    for frame in pixels.frames])
    elif uid != ExplicitVRLittleEndian:
        kwargs: dict[str, object] = {}
        if uid == JPEGLSNearLossless:
            kwargs["jls_error"] = 3
        elif uid == JPEG2000:
            kwargs["j2k_cr"] = [12]
        frames = pixels.frames if len(pixels.frames) > 1 else pixels.frames[0]
        ds.compress(uid, frames, generate_instance_uid=False, **kwargs)
    if lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = LOSSY_METHODS[uid]
        ds.LossyImageCompressionRatio = f"{native_size / len(ds.PixelData):.2f}"
    return ds


def _set_encapsulated(ds: Dataset, uid: UID, frames: list[bytes]) -> None:
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _jpeg_baseline(frame: np.ndarray, photometric: str) -> bytes:
    """One frame as JPEG baseline by Pillow (quality 90): grey as is, RGB without a
    colour transform, YBR_FULL as YCbCr 4:4:4, YBR_FULL_422 as YCbCr 4:2:2."""
    out = io.BytesIO()
    if frame.ndim == 2:
        Image.fromarray(frame).save(out, "JPEG", quality=90)
        return out.getvalue()
    if photometric != "RGB":  # the frame holds YBR: Pillow takes RGB and converts
        frame = convert_color_space(frame, "YBR_FULL", "RGB")
    options = {"keep_rgb": True} if photometric == "RGB" else {}
    Image.fromarray(frame).save(out, "JPEG", quality=90,
                                subsampling=1 if photometric == "YBR_FULL_422" else 0,
                                **options)
    return out.getvalue()


def jpeg_lossless(frame: np.ndarray, precision: int) -> bytes:
    """One frame as JPEG lossless, process 14, selection value 1 (ITU T.81 H): one
    interleaved scan, one Huffman table of 5-bit codes for the 17 difference categories.

    ``frame`` is (rows, columns) or (rows, columns, samples); signed values are coded as
    their two's complement in ``precision`` bits, as DICOM stores them.
    """
    values = frame if frame.ndim == 3 else frame[:, :, None]
    rows, columns, samples = values.shape
    if values.dtype.kind == "i":
        values = values.astype(np.int64) & ((1 << precision) - 1)
    values = values.astype(np.int64)
    predicted = np.empty_like(values)
    predicted[:, 1:] = values[:, :-1]  # Ra, the sample to the left
    predicted[1:, 0] = values[:-1, 0]  # the first column: Rb, the sample above
    predicted[0, 0] = 1 << (precision - 1)
    difference = (values - predicted) % 65536
    difference = np.where(difference > 32768, difference - 65536, difference).ravel()
    category = np.frexp(np.abs(difference).astype(np.float64))[1].astype(np.int64)
    extra = np.where(difference < 0, difference + (1 << category) - 1, difference)
    extra_bits = np.where(category == 16, 0, category)  # 32768 has no extra bits
    code = (category << extra_bits) | (extra & ((1 << extra_bits) - 1))
    length = 5 + extra_bits
    shifts = length[:, None] - 1 - np.arange(21)[None, :]
    bits = (code[:, None] >> np.maximum(shifts, 0)) & 1
    stream = bits[shifts >= 0].astype(np.uint8)
    stream = np.concatenate([stream, np.ones(-len(stream) % 8, np.uint8)])  # pad with 1s
    entropy = np.packbits(stream).tobytes().replace(b"\xff", b"\xff\x00")

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    components = range(1, samples + 1)
    frame_header = bytes([precision]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") \
        + bytes([samples]) + b"".join(bytes([c, 0x11, 0]) for c in components)
    table = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    scan = bytes([samples]) + b"".join(bytes([c, 0x00]) for c in components) + bytes([1, 0, 0])
    return (b"\xff\xd8" + segment(0xC3, frame_header) + segment(0xC4, table)
            + segment(0xDA, scan) + entropy + b"\xff\xd9")


def decoded_frames(ds: Dataset) -> list[np.ndarray]:
    """Every frame as a reader sees it: pydicom's own decoding, in stored values (YBR
    kept as YBR_FULL, YBR_FULL_422 upsampled), except lossy JPEG, which decodes to RGB."""
    raw = ds.file_meta.TransferSyntaxUID not in (JPEGBaseline8Bit, JPEGExtended12Bit)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    return [pixel_array(ds, index=i, raw=raw) for i in range(count)]


def darkest(ds: Dataset) -> object:
    """The stored value that shows darkest in ``ds`` (a sample tuple for colour), worked
    out from its Image Pixel elements: what blanking paints."""
    photometric = ds.PhotometricInterpretation
    bits, signed = ds.BitsStored, ds.PixelRepresentation == 1
    if photometric == "MONOCHROME2":
        return -(1 << bits - 1) if signed else 0
    if photometric == "MONOCHROME1":
        return (1 << bits - 1) - 1 if signed else (1 << bits) - 1
    if photometric == "YBR_FULL":
        return [0, 1 << bits - 1, 1 << bits - 1]
    if photometric == "RGB":
        return [0, 0, 0]
    lut = apply_color_lut(np.arange(1 << bits), ds).astype(float)
    return int(np.argmin(lut @ [0.299, 0.587, 0.114]))

"""Fast, read-only access to a pydicom Dataset's elements as stored.

A de-identifier looks at every element several times (reader checks, rules, writer).
``Dataset.get_item(tag, keep_deferred=True)`` returns the stored element without
decoding it or reading a deferred value, but costs a tag conversion per call; this
gives the same objects through one mapping.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

#: The encoded (FFFE,E000) Item tag, little endian: how a sequence or fragment item starts.
ITEM_TAG = b"\xfe\xff\x00\xe0"


def stored(ds: Dataset) -> Mapping[int, DataElement | RawDataElement]:
    """The elements of ``ds`` as stored: tag -> DataElement or RawDataElement.

    Equivalent to ``{t: ds.get_item(t, keep_deferred=True) for t in ds.keys()}``;
    never decodes a value nor reads a deferred one. Read only: change ``ds`` itself.
    """
    return ds._dict  # pydicom keeps elements here; get_item(keep_deferred=True) reads it

"""S3 XML the gateway writes (error documents) or rewrites (listings), and upstream error documents it reads.

Upstream XML is untrusted input: it is parsed only with defusedxml (no DTDs, no entities). Listings are
rewritten in place, keeping the namespace, element order and whatever elements we do not know, and are
written back by a small serialiser of our own, because ElementTree's writes a carriage return in a key raw,
which the client's parser would then read back as a line feed.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus, urlencode
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway import errors

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# Characters XML 1.0 cannot carry at all, not even as references. An error message or resource naming a key
# with such a character would otherwise make the whole error document unreadable.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_ATTR_ESCAPES = {**_TEXT_ESCAPES, '"': "&quot;", "\n": "&#10;", "\t": "&#9;"}
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile("[&<>\r\"\n\t]")


def _text(value: str) -> str:
    value = _INVALID_XML.sub("\ufffd", value)
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], value)


def _attr(value: str) -> str:
    return _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES[m.group()], _INVALID_XML.sub("\ufffd", value))


def error_body(code: str, message: str, resource: str, request_id: str,
               fields: Mapping[str, str] | None = None) -> bytes:
    """An S3 error document: Code, Message, the error's extra fields, Resource, RequestId."""
    parts = [f"<Error><Code>{_text(code)}</Code><Message>{_text(message)}</Message>"]
    for name, value in (fields or {}).items():
        if _XML_NAME.match(name) and not name.lower().startswith("xml"):
            parts.append(f"<{name}>{_text(str(value))}</{name}>")
    parts.append(f"<Resource>{_text(resource)}</Resource><RequestId>{_text(request_id)}</RequestId></Error>")
    return DECLARATION + "".join(parts).encode("utf-8")


# --- reading --------------------------------------------------------------------------------------

def _parse(body: bytes) -> Element:
    return SafeET.fromstring(body, forbid_dtd=True)


def _split(tag: str) -> tuple[str, str]:
    """'{uri}local' -> (uri, local); a tag without a namespace has uri ''."""
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def _child(elem: Element, local: str) -> Element | None:
    for child in elem:
        if _split(child.tag)[1] == local:
            return child
    return None


def _child_text(elem: Element, local: str) -> str | None:
    child = _child(elem, local)
    return None if child is None else (child.text or "")


def parse_error(body: bytes) -> tuple[str, str] | None:
    """(code, message) of an S3 error document, or None if the body is not one. Leading whitespace is allowed:
    S3 pads the 200 response of a long CompleteMultipartUpload or copy that then fails with an error document."""
    if not body or not body.strip():
        return None
    try:
        root = _parse(body.lstrip())
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return None
    if _split(root.tag)[1] != "Error":
        return None
    code = _child_text(root, "Code")
    if not code:
        return None
    return code.strip(), (_child_text(root, "Message") or "").strip()


# --- listings -------------------------------------------------------------------------------------

_ENTRIES = {"ListBucketResult": {"Contents"}, "ListVersionsResult": {"Version", "DeleteMarker"},
            "ListPartsResult": {"Part"}, "ListPartsResponse": {"Part"}}  # moto says ListPartsResponse


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True)
class ListedObject:
    key: str  # decoded (a listing with encoding-type=url has it form-encoded)
    version_id: str | None  # ListObjectVersions only
    stored_size: int
    etag: str


def _listing(body: bytes) -> tuple[Element, str, str, set[str] | None, bool]:
    """(root, namespace, document kind, the names of its entries or None if not a listing, URL-encoded keys)."""
    try:
        root = _parse(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        # Passing it through would show stored (ciphertext) sizes and hidden keys as if they were the truth.
        raise errors.InternalError("The object store returned a listing the gateway could not read.") from None
    uri, kind = _split(root.tag)
    url_encoded = (_child_text(root, "EncodingType") or "").strip().lower() == "url"
    return root, uri, kind, _ENTRIES.get(kind), url_encoded


def _entry_key(entry: Element, url_encoded: bool) -> str | None:
    raw_key = _child_text(entry, "Key")
    # S3 encodes keys form-style with encoding-type=url (botocore decodes them with unquote_plus).
    return unquote_plus(raw_key) if raw_key is not None and url_encoded else raw_key


def listed_objects(body: bytes) -> list[ListedObject]:
    """The objects (and object versions) a ListObjects (v1, v2) or ListObjectVersions result names, with their
    stored sizes; delete markers and any other document give none."""
    root, _, _, entry_names, url_encoded = _listing(body)
    out = []
    for entry in root:
        if entry_names is None or _split(entry.tag)[1] not in entry_names:
            continue  # (parts of a ListParts result have no key, so they are not taken either)
        key, stored = _entry_key(entry, url_encoded), _int(_child_text(entry, "Size"))
        if key is not None and stored is not None:
            out.append(ListedObject(key, _child_text(entry, "VersionId"), stored, _child_text(entry, "ETag") or ""))
    return out


def rewrite_listing(body: bytes, size_of: Callable[[int, str], int | None],
                    hide_key: Callable[[str], bool] = lambda key: False,
                    stored_as_is: Container[tuple[str, str | None]] = frozenset()) -> bytes:
    """Rewrite a ListObjects (v1, v2), ListObjectVersions or ListParts result: each entry's <Size> becomes
    size_of(stored size, ETag) (None: left as it is) unless its (key, version id) is in `stored_as_is`, and
    entries (and common prefixes) whose key hide_key() names are dropped. Any other document is returned
    unchanged."""
    root, uri, kind, entry_names, url_encoded = _listing(body)
    if entry_names is None:
        return body

    dropped = 0
    last_key: str | None = None
    for entry in list(root):
        local = _split(entry.tag)[1]
        if local == "CommonPrefixes":
            prefix = _child_text(entry, "Prefix")
            if prefix is not None and hide_key(unquote_plus(prefix) if url_encoded else prefix):
                root.remove(entry)
                dropped += 1
            continue
        if local not in entry_names:
            continue
        raw_key, key = _child_text(entry, "Key"), _entry_key(entry, url_encoded)
        if raw_key is not None and key is not None:
            last_key = raw_key
            if hide_key(key):
                root.remove(entry)
                dropped += 1
                continue
        size_elem = _child(entry, "Size")
        stored = _int(size_elem.text) if size_elem is not None else None
        if size_elem is not None and stored is not None and (key, _child_text(entry, "VersionId")) not in stored_as_is:
            shown = size_of(stored, _child_text(entry, "ETag") or "")
            if shown is not None:
                size_elem.text = str(shown)

    if dropped:
        key_count = _child(root, "KeyCount")
        if key_count is not None:  # ListObjectsV2 only: Contents plus CommonPrefixes returned
            count = _int(key_count.text)
            if count is not None:
                key_count.text = str(max(0, count - dropped))
        elif kind == "ListBucketResult":
            _keep_v1_marker(root, uri, last_key)
    return DECLARATION + _serialise(root).encode("utf-8")


def _keep_v1_marker(root: Element, uri: str, last_key: str | None) -> None:
    """ListObjects v1 without a delimiter has no NextMarker: clients continue after the last key they see.
    Had we dropped that key, they would list it again (or stop, on a page we emptied). Say where S3 stopped."""
    truncated = (_child_text(root, "IsTruncated") or "").strip().lower() == "true"
    if not truncated or last_key is None or _child(root, "NextMarker") is not None:
        return
    marker = Element(f"{{{uri}}}NextMarker" if uri else "NextMarker")
    marker.text = last_key  # still URL-encoded if the listing is: clients decode NextMarker like Key
    children = list(root)
    position = next((i + 1 for i, c in enumerate(children) if _split(c.tag)[1] == "Marker"), None)
    if position is None:
        position = next((i for i, c in enumerate(children)
                         if _split(c.tag)[1] in ("Contents", "CommonPrefixes")), len(children))
    root.insert(position, marker)


def _serialise(elem: Element, default_uri: str | None = None) -> str:
    """Elements take the namespace of their tag as the default namespace (xmlns="..."), declared only where
    it changes; namespaced attributes get a local prefix. Text and tails are kept, escaped."""
    uri, local = _split(elem.tag)
    head = [local]
    if uri != (default_uri or ""):
        head.append(f'xmlns="{_attr(uri)}"')
    for n, (name, value) in enumerate(elem.attrib.items()):
        attr_uri, attr_local = _split(name)
        if attr_uri:
            head.append(f'xmlns:a{n}="{_attr(attr_uri)}" a{n}:{attr_local}="{_attr(value)}"')
        else:
            head.append(f'{attr_local}="{_attr(value)}"')
    inner = [_text(elem.text)] if elem.text else []
    for child in elem:
        inner.append(_serialise(child, uri))
        if child.tail:
            inner.append(_text(child.tail))
    start = " ".join(head)
    if not inner:
        return f"<{start}/>"
    return f"<{start}>{''.join(inner)}</{local}>"


def tagging_header(body: bytes) -> str:
    """A GetObjectTagging result as the `x-amz-tagging` header of a write: `k1=v1&k2=v2` (URL-encoded)."""
    try:
        root = _parse(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        raise errors.UpstreamError("The object store returned tags the gateway could not read.") from None
    tag_set = _child(root, "TagSet")
    tags = [] if tag_set is None else [tag for tag in tag_set if _split(tag.tag)[1] == "Tag"]
    pairs = [(_child_text(tag, "Key") or "", _child_text(tag, "Value") or "") for tag in tags]
    return urlencode(pairs, quote_via=quote)

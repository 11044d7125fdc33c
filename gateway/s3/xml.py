"""S3 XML the gateway writes (error documents) or rewrites (listings), and upstream error documents it reads.

Upstream XML is untrusted input: it is parsed only with defusedxml (no DTDs, no entities). Listings are
rewritten in place, keeping the namespace, element order and whatever elements we do not know, and are
written back by a small serialiser of our own, because ElementTree's writes a carriage return in a key raw,
which the client's parser would then read back as a line feed.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus, urlencode
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway import errors
from gateway.numerals import decimal

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

# Deeper than any document S3 writes or reads (a listing is four levels: ListVersionsResult/Version/Owner/ID).
# A deeper one is refused at once: walking or writing it would exhaust Python's recursion limit.
MAX_DEPTH = 16


class _Unreadable(Exception):
    """Internal: the bytes are not a document the gateway reads (mapped to the caller's S3 error)."""


def _read(body: bytes) -> Element:
    # ValueError covers undecodable text, LookupError an unknown encoding declaration; the defusedxml errors are
    # DTDs and entities, which no S3 document has.
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError, LookupError):
        raise _Unreadable() from None
    pending = [(root, 1)]
    while pending:  # iteratively: a recursive walk is exactly what a deep document would break
        elem, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _Unreadable()
        pending.extend((child, depth + 1) for child in elem)
    return root


def store_document(body: bytes, what: str) -> Element:
    """A document from the store (a listing, an error, a multipart or copy result). Whatever the store sends,
    the answer is the tree or UpstreamError: a store that cannot be read is the store's fault, retryable."""
    try:
        return _read(body)
    except _Unreadable:
        raise errors.UpstreamError(f"The object store returned {what} the gateway could not read.") from None


def client_document(body: bytes, root_name: str) -> Element:
    """A client's request document that the gateway acts on (DeleteObjects, CompleteMultipartUpload), held to
    what the gateway reads: well-formed, no DTD, root `root_name`, every element in the root's namespace (none
    or S3's), no attributes, no text outside leaf elements. Anything else is MalformedXML, so no document the
    gateway reads one way can reach a store that reads it another."""
    try:
        root = _read(body)
    except _Unreadable:
        raise errors.MalformedXML() from None
    uri, local = _split(root.tag)
    if local != root_name or uri not in ("", S3_NAMESPACE):
        raise errors.MalformedXML()
    for elem in root.iter():
        if _split(elem.tag)[0] != uri or elem.attrib or (len(elem) and (elem.text or "").strip()):
            raise errors.MalformedXML()
        if elem is not root and (elem.tail or "").strip():
            raise errors.MalformedXML()
    return root


def check_client_document(body: bytes) -> None:
    """A client's XML body the gateway forwards without acting on it (tagging, ACLs, bucket configuration):
    MalformedXML unless it is well-formed, without DTD or entities, and of bounded depth."""
    try:
        _read(body)
    except _Unreadable:
        raise errors.MalformedXML() from None


def children(elem: Element, once: Collection[str], repeated: Collection[str] = ()) -> dict[str, list[Element]]:
    """The children of a client document's element by local name: each of `once` at most once, `repeated` any
    number of times; any other child (or a second one of `once`) is MalformedXML."""
    found: dict[str, list[Element]] = {}
    for child in elem:
        local = _split(child.tag)[1]
        if local not in once and local not in repeated:
            raise errors.MalformedXML()
        found.setdefault(local, []).append(child)
        if local in once and len(found[local]) > 1:
            raise errors.MalformedXML()
    return found


def leaf_text(elem: Element) -> str:
    """The text of a client document's leaf element; MalformedXML if it has children."""
    if len(elem):
        raise errors.MalformedXML()
    return elem.text or ""


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
        root = _read(body.lstrip())
    except _Unreadable:
        return None
    if _split(root.tag)[1] != "Error":
        return None
    code = _child_text(root, "Code")
    if not code:
        return None
    return code.strip(), (_child_text(root, "Message") or "").strip()


# --- listings -------------------------------------------------------------------------------------

_ENTRIES = {"ListBucketResult": {"Contents", "CommonPrefixes"},
            "ListVersionsResult": {"Version", "DeleteMarker", "CommonPrefixes"},
            "ListMultipartUploadsResult": {"Upload", "CommonPrefixes"},
            "ListPartsResult": {"Part"}, "ListPartsResponse": {"Part"}}  # moto says ListPartsResponse
# Where the next page of a truncated listing of keys starts, as the store says it (keys or opaque tokens).
_NEXT = {"ListBucketResult": ("NextMarker", "NextContinuationToken"),
         "ListVersionsResult": ("NextKeyMarker", "NextVersionIdMarker"),
         "ListMultipartUploadsResult": ("NextKeyMarker", "NextUploadIdMarker")}
_NEXT_KEYS = {"NextMarker", "NextKeyMarker"}  # of those, the ones that are keys (URL-encoded like Key)


def _int(text: str | None) -> int | None:
    return decimal((text or "").strip())


@dataclass(frozen=True)
class ListedObject:
    key: str  # decoded (a listing with encoding-type=url has it form-encoded)
    version_id: str | None  # ListObjectVersions only
    stored_size: int
    etag: str


def _listing(body: bytes) -> tuple[Element, str, str, set[str] | None, bool]:
    """(root, namespace, document kind, the names of its entries or None if not a listing, URL-encoded keys)."""
    # Passing an unreadable listing through would show stored (ciphertext) sizes and hidden keys as the truth.
    root = store_document(body, "a listing")
    uri, kind = _split(root.tag)
    url_encoded = (_child_text(root, "EncodingType") or "").strip().lower() == "url"
    return root, uri, kind, _ENTRIES.get(kind), url_encoded


def _decoded(raw: str | None, url_encoded: bool) -> str | None:
    # S3 encodes keys form-style with encoding-type=url (botocore decodes them with unquote_plus).
    return unquote_plus(raw) if raw is not None and url_encoded else raw


def _entry_name(entry: Element, url_encoded: bool) -> str | None:
    """The key an entry names (decoded): its Key, or the Prefix of a CommonPrefixes entry."""
    field = "Prefix" if _split(entry.tag)[1] == "CommonPrefixes" else "Key"
    return _decoded(_child_text(entry, field), url_encoded)


def listed_objects(body: bytes) -> list[ListedObject]:
    """The objects (and object versions) a ListObjects (v1, v2) or ListObjectVersions result names, with their
    stored sizes; delete markers and any other document give none."""
    root, _, _, entry_names, url_encoded = _listing(body)
    out = []
    for entry in root:
        if entry_names is None or _split(entry.tag)[1] not in entry_names:
            continue  # (parts of a ListParts result have no key, so they are not taken either)
        key, stored = _decoded(_child_text(entry, "Key"), url_encoded), _int(_child_text(entry, "Size"))
        if key is not None and stored is not None:
            out.append(ListedObject(key, _child_text(entry, "VersionId"), stored, _child_text(entry, "ETag") or ""))
    return out


def _truncated(root: Element) -> bool:
    return (_child_text(root, "IsTruncated") or "").strip().lower() == "true"


def visible_before_hidden(body: bytes, hide_key: Callable[[str], bool]) -> int | None:
    """For a truncated listing page of keys that ends among hidden keys: how many entries it shows before them.
    None for any other page. Such a page cannot be answered as it is: its continuation point (NextMarker, the
    last key, an opaque token) would name a hidden key or start the client's next page among them. Hidden keys
    are a prefix, hence one contiguous run of the key order: everything visible on such a page precedes it."""
    root, _, kind, entry_names, url_encoded = _listing(body)
    if kind not in _NEXT or entry_names is None or not _truncated(root):
        return None
    names = [_entry_name(entry, url_encoded) for entry in root if _split(entry.tag)[1] in entry_names]
    markers = [_decoded(_child_text(root, name), url_encoded) for name in _NEXT[kind] if name in _NEXT_KEYS]
    listed = [name for name in names if name is not None]
    if not any(hide_key(name) for name in markers if name is not None) and not (listed and hide_key(max(listed))):
        return None
    return sum(1 for name in listed if not hide_key(name))


def query_after(query: Sequence[tuple[str, str]], after: str, count: int) -> list[tuple[str, str]]:
    """The listing request `query` (ListObjects v1/v2, ListObjectVersions, ListMultipartUploads), moved to start
    after the key `after` and limited to `count` entries; every other parameter (prefix, delimiter, encoding)
    kept."""
    names = {name for name, _ in query}
    if "uploads" in names:
        start, limit, drop = "key-marker", "max-uploads", {"upload-id-marker"}
    elif "versions" in names:
        start, limit, drop = "key-marker", "max-keys", {"version-id-marker"}
    elif ("list-type", "2") in query:
        start, limit, drop = "start-after", "max-keys", {"continuation-token"}
    else:
        start, limit, drop = "marker", "max-keys", set()
    kept = [(name, value) for name, value in query if name not in {start, limit} | drop]
    return kept + [(start, after), (limit, str(count))]


def shadowing_prefixes(body: bytes, hidden_prefix: str) -> list[str]:
    """The common prefixes of a listing page that are shorter than `hidden_prefix` and lead into it (a delimiter
    cut inside it, e.g. `.envelope-` for `.envelope-gateway/`). Such a prefix may stand for hidden keys alone; it
    is shown only if a visible key lies under it (see probe_query)."""
    root, _, _, entry_names, url_encoded = _listing(body)
    if entry_names is None or "CommonPrefixes" not in entry_names:
        return []
    found = (_entry_name(entry, url_encoded) for entry in root if _split(entry.tag)[1] == "CommonPrefixes")
    return [name for name in found if name and name != hidden_prefix and hidden_prefix.startswith(name)]


def probe_query(query: Sequence[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    """A one-entry listing of the same kind as `query` (objects, versions or uploads) of every key under `prefix`,
    no delimiter: the first key at or after `prefix` (query_after moves it past a hidden run)."""
    names = {name for name, _ in query}
    kind = [("uploads", ""), ("max-uploads", "1")] if "uploads" in names else \
        [("versions", ""), ("max-keys", "1")] if "versions" in names else [("list-type", "2"), ("max-keys", "1")]
    return [*kind, ("prefix", prefix), ("encoding-type", "url")]


def listed_keys(body: bytes) -> list[str]:
    """The keys a listing page's entries name (objects, versions, delete markers, uploads), decoded; not its
    common prefixes."""
    root, _, _, entry_names, url_encoded = _listing(body)
    if entry_names is None:
        return []
    names = (_entry_name(entry, url_encoded) for entry in root
             if _split(entry.tag)[1] in entry_names and _split(entry.tag)[1] != "CommonPrefixes")
    return [name for name in names if name is not None]


def requested_entries(query: Sequence[tuple[str, str]]) -> int:
    """How many entries a listing request asks for: max-keys / max-uploads, 1,000 (S3's default and cap)."""
    for name, value in query:
        if name in ("max-keys", "max-uploads"):
            asked = decimal(value.strip())
            return 1000 if asked is None else min(asked, 1000)
    return 1000


def rewrite_listing(body: bytes, size_of: Callable[[int, str], int | None],
                    hide_key: Callable[[str], bool] = lambda key: False,
                    stored_as_is: Container[tuple[str, str | None]] = frozenset(),
                    following: bytes | None = None) -> bytes:
    """Rewrite a ListObjects (v1, v2), ListObjectVersions, ListMultipartUploads or ListParts result: each
    entry's <Size> becomes size_of(stored size, ETag) (None: left as it is) unless its (key, version id) is in
    `stored_as_is`, and entries and common prefixes whose key hide_key() names are dropped. `following`: the
    store's page after the hidden keys (see visible_before_hidden), whose entries and continuation replace those
    of this page. No continuation marker that names a hidden key is ever kept. Any other document is returned
    unchanged."""
    root, uri, kind, entry_names, url_encoded = _listing(body)
    if entry_names is None:
        return body
    _rewrite_entries(root, entry_names, url_encoded, size_of, hide_key, stored_as_is)
    if following is not None and kind in _NEXT:
        _append_following(root, kind, following, size_of, hide_key, stored_as_is)
    if kind in _NEXT:
        for name in _NEXT[kind]:
            marker = _child(root, name)
            if marker is not None and name in _NEXT_KEYS and hide_key(_decoded(marker.text or "", url_encoded) or ""):
                root.remove(marker)
    key_count = _child(root, "KeyCount")
    if key_count is not None:  # ListObjectsV2: Contents plus CommonPrefixes returned
        key_count.text = str(sum(1 for entry in root if _split(entry.tag)[1] in entry_names))
    return DECLARATION + _serialise(root).encode("utf-8")


def _rewrite_entries(root: Element, entry_names: set[str], url_encoded: bool,
                     size_of: Callable[[int, str], int | None], hide_key: Callable[[str], bool],
                     stored_as_is: Container[tuple[str, str | None]]) -> None:
    for entry in list(root):
        if _split(entry.tag)[1] not in entry_names:
            continue
        name = _entry_name(entry, url_encoded)
        if name is not None and hide_key(name):
            root.remove(entry)
            continue
        size_elem = _child(entry, "Size")
        stored = _int(size_elem.text) if size_elem is not None else None
        if size_elem is not None and stored is not None and (name, _child_text(entry, "VersionId")) not in stored_as_is:
            shown = size_of(stored, _child_text(entry, "ETag") or "")
            if shown is not None:
                size_elem.text = str(shown)


def _append_following(root: Element, kind: str, following: bytes, size_of: Callable[[int, str], int | None],
                      hide_key: Callable[[str], bool], stored_as_is: Container[tuple[str, str | None]]) -> None:
    """Take the following page's entries, truncation and continuation into `root`; `root` keeps what echoes
    the client's request (Marker, StartAfter, ContinuationToken, KeyMarker, MaxKeys, Prefix, …)."""
    other, _, other_kind, entry_names, url_encoded = _listing(following)
    if other_kind != kind or entry_names is None:
        raise errors.UpstreamError("The object store returned a listing the gateway could not read.")
    _rewrite_entries(other, entry_names, url_encoded, size_of, hide_key, stored_as_is)
    for name in _NEXT[kind]:
        old = _child(root, name)
        if old is not None:
            root.remove(old)
    truncated = _child(root, "IsTruncated")
    if truncated is not None:
        truncated.text = "true" if _truncated(other) else "false"
    for elem in other:
        local = _split(elem.tag)[1]
        if local in entry_names or local in _NEXT[kind]:
            root.append(elem)


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
    root = store_document(body, "tags")
    tag_set = _child(root, "TagSet")
    tags = [] if tag_set is None else [tag for tag in tag_set if _split(tag.tag)[1] == "Tag"]
    pairs = [(_child_text(tag, "Key") or "", _child_text(tag, "Value") or "") for tag in tags]
    return urlencode(pairs, quote_via=quote)

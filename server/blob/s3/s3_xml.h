// Reading the XML documents S3 replies with (ListObjectsV2 pages, CreateMultipartUpload results,
// error documents), and turning an error reply into a Status. A scanner, not a parser: it finds
// elements by name, which is all these flat, server-generated documents need. It does not
// validate, and does not handle CDATA, comments or nested elements of the same name (S3 sends
// none of them).
//
// Thread safety: pure functions, re-entrant.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modelfleet/status.h"

namespace modelfleet::blob::s3 {

// The raw (still entity-encoded) inner texts of the <tag ...>...</tag> and <tag/> elements of
// `xml`, in document order, as views into `xml`. A longer name sharing the prefix (<KeyCount>
// for <Key>) does not match.
std::vector<std::string_view> XmlRawElements(std::string_view xml, std::string_view tag);

// The text of the first <tag>...</tag> element of `xml`, entities decoded; nullopt if absent.
std::optional<std::string> XmlFirstElement(std::string_view xml, std::string_view tag);

// The texts of all <tag>...</tag> elements, in document order, entities decoded.
std::vector<std::string> XmlAllElements(std::string_view xml, std::string_view tag);

// Decodes &amp; &lt; &gt; &quot; &apos; and numeric references (&#38; &#x26;) as UTF-8.
// Unknown or malformed references are kept verbatim.
std::string XmlUnescape(std::string_view text);

// Escapes & < > for element text of the request bodies this client builds
// (CompleteMultipartUpload, CreateBucketConfiguration).
std::string XmlEscape(std::string_view text);

// Turns a non-2xx S3 reply into a Status, following the error contract of s3_blob_store.h.
// `operation` describes the request ("GET object 'sha256/ab' in bucket 'b'") and starts the
// message, followed by the HTTP status, the S3 error code and message when the body has them.
// `body` is the XML error document, empty for HEAD replies (then the HTTP status alone decides).
// A 200 reply whose body is an <Error> document maps by its code like any other.
Status StatusFromS3Error(std::string_view operation, long http_status, std::string_view body);

}  // namespace modelfleet::blob::s3

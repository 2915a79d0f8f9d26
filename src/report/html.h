// Text helpers for the self-contained HTML report.
#pragma once

#include <string>

namespace dfq {

// `text` with & < > " ' replaced by entities: safe in element content and in
// quoted attribute values.
std::string escape_html(const std::string& text);

// Standard base64 (RFC 4648, with padding) of raw bytes.
std::string base64(const std::string& bytes);

// printf-style formatting of one number ("%.2f"); "n/a" for NaN.
std::string format_number(double value, const char* format);

// Byte counts for people: "1,076,136 B (1.03 MiB)".
std::string format_bytes(double bytes);

}  // namespace dfq

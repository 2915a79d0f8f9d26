// The JSON files of a run folder, read defensively: a missing file or field is
// "absent" (the report omits that part with a note); a file that is not JSON,
// or a field of the wrong type, is a dfq::Error naming the file and field.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace dfq {

struct JsonInput {
  std::string path;  // as shown in notes and errors
  nlohmann::json doc;
};

// The parsed file, or nullopt when no file exists at `path`. Throws dfq::Error
// naming `path` when it is unreadable, not valid JSON or not a JSON object.
std::optional<JsonInput> read_json_input(const std::string& path);

// Typed fields of `object` (the file's document or an object inside it) at a
// dotted key ("results.fp32.top1"). nullopt / nullptr when absent or null;
// dfq::Error "<path> field '<where><key>'" when present with another type.
// `where` prefixes the key in messages, e.g. "layers[3]." for an array entry.
std::optional<double> number_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                   const std::string& where = "");
std::optional<std::string> string_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                        const std::string& where = "");
std::optional<bool> bool_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                               const std::string& where = "");
const nlohmann::json* array_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                  const std::string& where = "");
const nlohmann::json* object_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                   const std::string& where = "");

// A scalar field as display text (strings as they are, numbers as JSON prints
// them, booleans yes/no); nullopt when absent, null, an array or an object.
std::optional<std::string> scalar_text(const nlohmann::json& object, const std::string& key);

}  // namespace dfq

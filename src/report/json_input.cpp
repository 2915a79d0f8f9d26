#include "report/json_input.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace dfq {

namespace {

std::string type_text(const nlohmann::json& value) {
  if (value.is_string()) {
    std::string s = value.get<std::string>();
    if (s.size() > 40) s = s.substr(0, 40) + "...";
    return "a string (\"" + s + "\")";
  }
  if (value.is_boolean()) return std::string("a boolean (") + (value.get<bool>() ? "true" : "false") + ")";
  if (value.is_number()) return "a number (" + value.dump() + ")";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return "null";
}

// The value at `key` (dotted), or nullptr when a part is absent or null.
const nlohmann::json* find(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                           const std::string& where) {
  const nlohmann::json* node = &object;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object())
      fail(in.path + " field '" + where + key.substr(0, start ? start - 1 : 0) + "'", "an object", type_text(*node));
    const auto it = node->find(part);
    if (it == node->end() || it->is_null()) return nullptr;
    node = &*it;
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

[[noreturn]] void wrong_type(const JsonInput& in, const std::string& key, const std::string& where,
                             const std::string& expected, const nlohmann::json& found) {
  fail(in.path + " field '" + where + key + "'", expected, type_text(found));
}

}  // namespace

std::optional<JsonInput> read_json_input(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  if (std::filesystem::is_directory(path, ec)) fail(path, "a JSON file", "a directory");
  std::ifstream file(path, std::ios::binary);
  if (!file) fail(path, "a readable JSON file", std::strerror(errno));
  std::stringstream text;
  text << file.rdbuf();
  JsonInput in{path, {}};
  try {
    in.doc = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 15: ..." -> "line 1, column 15"
    std::string where = e.what();
    const size_t at = where.find(" at line ");
    where = at == std::string::npos ? "byte " + std::to_string(e.byte) : where.substr(at + 4, where.find(':', at) - at - 4);
    fail(path, "valid JSON", "a syntax error at " + where);
  }
  if (!in.doc.is_object()) fail(path, "a JSON object", type_text(in.doc));
  return in;
}

std::optional<double> number_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                   const std::string& where) {
  const nlohmann::json* value = find(in, object, key, where);
  if (!value) return std::nullopt;
  if (!value->is_number()) wrong_type(in, key, where, "a number", *value);
  return value->get<double>();
}

std::optional<std::string> string_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                        const std::string& where) {
  const nlohmann::json* value = find(in, object, key, where);
  if (!value) return std::nullopt;
  if (!value->is_string()) wrong_type(in, key, where, "a string", *value);
  return value->get<std::string>();
}

std::optional<bool> bool_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                               const std::string& where) {
  const nlohmann::json* value = find(in, object, key, where);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) wrong_type(in, key, where, "true or false", *value);
  return value->get<bool>();
}

const nlohmann::json* array_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                  const std::string& where) {
  const nlohmann::json* value = find(in, object, key, where);
  if (value && !value->is_array()) wrong_type(in, key, where, "an array", *value);
  return value;
}

const nlohmann::json* object_field(const JsonInput& in, const nlohmann::json& object, const std::string& key,
                                   const std::string& where) {
  const nlohmann::json* value = find(in, object, key, where);
  if (value && !value->is_object()) wrong_type(in, key, where, "an object", *value);
  return value;
}

std::optional<std::string> scalar_text(const nlohmann::json& object, const std::string& key) {
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null() || it->is_array() || it->is_object()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return std::string(it->get<bool>() ? "yes" : "no");
  return it->dump();
}

}  // namespace dfq

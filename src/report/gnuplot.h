// Plots rendered by gnuplot (Debian gnuplot-nox) as SVG and inlined into the
// page, so the report needs no image files and no scripts.
#pragma once

#include <optional>
#include <string>

namespace dfq {

// Runs gnuplot (`program`, looked up on PATH) on `script`, which must select
// the svg terminal and leave the output on stdout. Returns the SVG document, or
// nullopt when the program cannot be started (not installed). Throws
// dfq::Error with gnuplot's message when it rejects the script.
std::optional<std::string> run_gnuplot(const std::string& program, const std::string& script);

// A gnuplot single-quoted string literal of `text`.
std::string gnuplot_string(const std::string& text);

// `text` made safe inside a double-quoted field of an inline data block.
std::string gnuplot_data_label(const std::string& text);

// gnuplot's SVG document ready to be inlined in HTML: XML prolog and namespace
// declarations dropped, xlink:href as plain href, every id (and reference to
// one) prefixed with `id_prefix` so that several plots can share a page, and
// the <title> replaced by `title` (escaped here).
std::string inline_svg(const std::string& svg, const std::string& id_prefix, const std::string& title);

}  // namespace dfq

// The HTML run report (src/report) on fixture run folders written at test
// time: sections, embedded plots and images, escaping, missing and malformed
// inputs, and the accuracy curve over sibling runs of the same model.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <sstream>

#include "report/card.h"
#include "report/charts.h"
#include "report/gnuplot.h"
#include "report/html.h"
#include "report/image_grid.h"
#include "report/run_report.h"
#include "report/siblings.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace dfq;
using namespace dfq::testing;
using Json = nlohmann::json;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/dfq-report-test-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

// gnuplot is installed by scripts/install-deps.sh; CI must have it, elsewhere
// the plot checks skip with a message.
#define REQUIRE_GNUPLOT()                                                                         \
  do {                                                                                            \
    if (!on_path("gnuplot")) {                                                                    \
      if (std::getenv("CI")) FAIL() << "gnuplot is not installed (scripts/install-deps.sh)";     \
      GTEST_SKIP() << "gnuplot not installed (Debian gnuplot-nox): plots not checked";            \
    }                                                                                             \
  } while (0)

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string decode_base64(const std::string& text) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned value = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    value = value << 6 | static_cast<unsigned>(alphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(value >> bits & 0xFF);
    }
  }
  return out;
}

// The names a fixture run uses; tests swap in hostile ones.
struct Names {
  std::string layer = "layer1.0.conv1";
  std::string model = "fixture-cnn";
  std::string choice = "Weight granularity";
};

Json card(const std::string& sha, double wbits, double abits, double integer_top1, const Names& names = {}) {
  return {
      {"tool", {{"name", "dfq"}, {"version", "0.5.0"}}},
      {"model", {{"path", "weights/fixture.pt"}, {"sha256", sha}, {"name", names.model}}},
      {"wbits", wbits},
      {"abits", abits},
      {"choices", Json::array({{{"name", names.choice}, {"value", "symmetric, per output channel"}},
                               {{"name", "Activation range"}, {"value", "MMSE"}}})},
      {"layers", Json::array({{{"name", "conv1"}, {"weight_bits", 8}, {"activation_bits", 8}, {"residual", false}},
                              {{"name", names.layer}, {"weight_bits", wbits}, {"activation_bits", abits}, {"residual", true}},
                              {{"name", "fc"}, {"weight_bits", 8}, {"activation_bits", nullptr}, {"residual", false}}})},
      {"results", {{"fp32", {{"top1", 91.25}, {"top5", 99.5}, {"images", 600}}},
                   {"integer", {{"top1", integer_top1}, {"top5", 99.0}, {"images", 600}}},
                   {"drop_top1", 91.25 - integer_top1},
                   {"drop_top5", 0.5}}},
      {"sizes", {{"fp32_bytes", 1076136}, {"artifact_bytes", 164023}}},
      {"stages", Json::array({{{"name", "synthesis"}, {"seconds", 40.1}, {"cached", false}},
                              {{"name", "quantization"}, {"seconds", 3.5}, {"cached", true}}})},
      {"seed", 0},
      {"threads", 2},
      {"machine", "test machine"}};
}

// A complete run folder: card, quantize/synth/eval JSON and `per_label` PNGs
// of `size` x `size` for each of `labels` labels.
void make_run(const fs::path& dir, const Json& card_json, const Names& names = {}, int labels = 3, int per_label = 10,
              int size = 28) {
  write(dir / "card.json", card_json.dump(2));
  const Json quantize = {
      {"wbits", 4}, {"abits", 4},
      {"layers", Json::array({{{"name", "conv1"}, {"bits", 8}, {"parameters", 150}, {"weight_sqnr_db", 38.5},
                               {"clip_ratio", 1.0}, {"residual", false}},
                              {{"name", names.layer}, {"bits", 4}, {"parameters", 2304}, {"weight_sqnr_db", 17.25},
                               {"clip_ratio", 0.81}, {"residual", true}},
                              {{"name", "fc"}, {"bits", 8}, {"parameters", 1290}, {"weight_sqnr_db", 36.0},
                               {"clip_ratio", 0.97}, {"residual", false}}})},
      {"points", Json::array({{{"name", "input"}, {"range", "int8 [-128, 127]"}, {"scale", 0.02}, {"clip", 2.5},
                               {"activation_sqnr_db", 999.0}},
                              {{"name", names.layer}, {"range", "uint4 [0, 15]"}, {"scale", 0.31}, {"clip", 4.6},
                               {"activation_sqnr_db", 14.75}}})}};
  write(dir / "quantize.json", quantize.dump(2));
  Json curve = Json::array();
  for (int i = 0; i < 50; ++i) curve.push_back(10.0 / (1 + i));
  const Json synth = {{"method", "direct"}, {"count", labels * per_label}, {"iterations", 50}, {"batch", 64},
                      {"seconds", 2.5}, {"image_iterations_per_second", 800.0}, {"initial_bn_loss", 10.0},
                      {"final_bn_loss", 0.2}, {"bn_loss_drop", 50.0}, {"label_agreement", 97.5},
                      {"class_histogram", Json::array({10, 10, 10})}, {"diversity", 1.4},
                      {"diversity_within_class", 1.3}, {"loss_curve", curve}};
  write(dir / "synth.json", synth.dump(2));
  write(dir / "fp32.json", Json({{"top1", 91.25}, {"top5", 99.5}, {"correct", 547}, {"images", 600}, {"seconds", 0.4},
                                 {"images_per_second", 1500.0}, {"engine", "fp32"}})
                               .dump(2));
  write(dir / "integer.json",
        Json({{"top1", 90.5}, {"top5", 99.0}, {"correct", 543}, {"images", 600}, {"seconds", 0.2},
              {"images_per_second", 3000.0}, {"engine", "integer"},
              {"accumulators", Json::array({{{"name", "conv1"}, {"worst_case", 40000}, {"bits", 17}, {"overflows_int16", true}},
                                            {{"name", "fc"}, {"worst_case", 9000}, {"bits", 15}, {"overflows_int16", false}}})}})
            .dump(2));
  for (int label = 0; label < labels; ++label) {
    const fs::path folder = dir / "synth" / "png" / std::to_string(label);
    fs::create_directories(folder);
    for (int i = 0; i < per_label; ++i) {
      cv::Mat image(size, size, CV_8UC1);
      for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) image.at<uint8_t>(y, x) = static_cast<uint8_t>((x * 9 + y * 5 + label * 40 + i * 7) % 256);
      char name[32];
      std::snprintf(name, sizeof name, "%06d.png", label * per_label + i);
      ASSERT_TRUE(cv::imwrite((folder / name).string(), image));
    }
  }
}

const std::string kSha = "3b1f0c9e5d2a4b6c8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";
const std::string kOtherSha = "ffff0c9e5d2a4b6c8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

std::vector<std::string> data_uris(const std::string& html) {
  std::vector<std::string> out;
  const std::string prefix = "src=\"data:image/png;base64,";
  for (size_t at = html.find(prefix); at != std::string::npos; at = html.find(prefix, at + 1)) {
    const size_t start = at + prefix.size();
    out.push_back(html.substr(start, html.find('"', start) - start));
  }
  return out;
}

}  // namespace

TEST(ReportHtml, EscapesEveryMarkupCharacter) {
  EXPECT_EQ(escape_html("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
  EXPECT_EQ(escape_html("layer1.0.conv1"), "layer1.0.conv1");
}

TEST(ReportHtml, Base64MatchesRfc4648AndRoundTrips) {
  // RFC 4648 section 10 test vectors.
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes += static_cast<char>(i * 37 % 256);
  EXPECT_EQ(decode_base64(base64(bytes)), bytes);
}

TEST(ReportHtml, FormatsBytesWithThousandsSeparators) {
  EXPECT_EQ(format_bytes(1076136), "1,076,136 B (1.03 MiB)");
  EXPECT_EQ(format_bytes(999), "999 B (0.98 KiB)");
}

TEST(ReportGnuplot, InlineSvgPrefixesIdsAndDropsNamespaces) {
  const std::string svg =
      "<?xml version=\"1.0\"?>\n<svg \n viewBox=\"0 0 10 10\"\n xmlns=\"http://www.w3.org/2000/svg\"\n"
      " xmlns:xlink=\"http://www.w3.org/1999/xlink\"\n>\n<title>Gnuplot</title>\n<defs><path id='gpPt1' d='M0,0'/></defs>"
      "<use xlink:href='#gpPt1'/><rect fill=\"url(#grad)\"/><text> id='x' &lt;b></text></svg>";
  const std::string out = inline_svg(svg, "p7-", "A <b>title</b>");
  EXPECT_EQ(out.rfind("<svg", 0), 0u) << out;
  EXPECT_EQ(out.find("http"), std::string::npos) << out;
  EXPECT_NE(out.find("id='p7-gpPt1'"), std::string::npos) << out;
  EXPECT_NE(out.find("href='#p7-gpPt1'"), std::string::npos) << out;
  EXPECT_EQ(out.find("xlink:"), std::string::npos) << out;
  EXPECT_NE(out.find("url(#p7-grad)"), std::string::npos) << out;
  EXPECT_NE(out.find("<text> id='x' &lt;b></text>"), std::string::npos) << "text must stay as it is: " << out;
  EXPECT_NE(out.find("<title>A &lt;b&gt;title&lt;/b&gt;</title>"), std::string::npos) << out;
}

TEST(ReportGnuplot, QuotesStringsAndDataLabels) {
  EXPECT_EQ(gnuplot_string("it's\na"), "'it''s a'");
  EXPECT_EQ(gnuplot_data_label("say \"hi\""), "say 'hi'");
}

TEST(ReportGnuplot, MissingProgramIsNoResultAndBadScriptAnError) {
  EXPECT_FALSE(run_gnuplot("/nonexistent/dfq-gnuplot", "set terminal svg\nplot x\n").has_value());
  REQUIRE_GNUPLOT();
  const std::string message = error_of([] { run_gnuplot("gnuplot", "set terminal svg\nplot $nothing using 1:2\n"); });
  EXPECT_NE(message.find("gnuplot"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(ReportGnuplot, LayerChartEscapesNamesInTheSvg) {
  REQUIRE_GNUPLOT();
  const std::string script = layer_bars_script("dB", {{"<script>x</script>", 12.0, false}, {"a\"b", 3.0, true}},
                                               "weights", "residual");
  const std::optional<std::string> svg = run_gnuplot("gnuplot", script);
  ASSERT_TRUE(svg.has_value());
  EXPECT_EQ(lower(*svg).find("<script"), std::string::npos);
  EXPECT_NE(svg->find("&lt;script"), std::string::npos);
  EXPECT_NE(svg->find("a'b"), std::string::npos);
  EXPECT_NE(svg->find("residual"), std::string::npos) << "the highlighted series has its key entry";
}

TEST(ReportCharts, AccuracyCurveHasOneLinePerSharedActivationWidth) {
  const std::vector<AccuracyPoint> uniform = {{8, 8, 91.2, "W8A8"}, {4, 4, 90.1, "W4A4"}, {6, 6, 91.0, "W6A6"}};
  std::string script = accuracy_vs_bits_script(uniform, 91.24);
  EXPECT_EQ(count(script, "with linespoints"), 1u) << script;
  EXPECT_LT(script.find("4 90.1 \"W4A4\""), script.find("6 91 \"W6A6\"")) << "sorted by weight bits: " << script;
  EXPECT_NE(script.find("FP32 91.24 %"), std::string::npos) << script;
  const std::vector<AccuracyPoint> mixed = {{8, 8, 91.2, "W8A8"}, {4, 8, 90.9, "W4A8"}, {4, 4, 90.1, "W4A4"}};
  script = accuracy_vs_bits_script(mixed, std::nullopt);
  EXPECT_EQ(count(script, "with linespoints"), 2u) << script;
  EXPECT_NE(script.find("8-bit activations"), std::string::npos) << script;
  EXPECT_EQ(script.find("FP32"), std::string::npos) << script;
}

TEST(ReportCharts, DegenerateDataStillRenders) {
  REQUIRE_GNUPLOT();
  const std::vector<std::string> scripts = {
      loss_curve_script("one step", {3.5}),
      loss_curve_script("with gaps", {NAN, 2.0, 0.0, -1.0, 1.0}),
      layer_bars_script("dB", {{"a", -3.5, false}, {"b", -0.5, true}}, "weights", "residual"),
      layer_bars_script("dB", {{"only", 12.0, false}}, "weights", ""),
      layer_bits_script({{"a", 4, NAN}, {"b", 2, NAN}}),
      accuracy_vs_bits_script({{4, 4, 50.0, "W4A4"}, {8, 8, 50.0, "W8A8"}}, std::nullopt),
      accuracy_vs_bits_script({{4, 4, 100.0, "W4A4"}, {4, 4, 100.0, "W4A4"}}, 100.0),
  };
  for (const std::string& script : scripts) {
    std::optional<std::string> svg;
    const std::string message = error_of([&] { svg = run_gnuplot("gnuplot", script); });
    EXPECT_EQ(message, "") << script;
    ASSERT_TRUE(svg.has_value());
    EXPECT_NE(svg->find("</svg>"), std::string::npos) << script;
  }
  // Negative SQNR bars stay on the axis.
  EXPECT_NE(layer_bars_script("dB", {{"a", -3.5, false}}, "w", "").find("set yrange [-3.5:*]"), std::string::npos);
}

TEST(ReportImages, RowsAreEnlargedByNearestNeighbour) {
  TempDir tmp;
  make_run(tmp.path(), card(kSha, 4, 4, 90.5), {}, 3, 10, 28);
  GridOptions options;  // 8 per class, at least 84 px
  const std::vector<ImageRow> rows = image_rows((tmp.path() / "synth" / "png").string(), options);
  ASSERT_EQ(rows.size(), 3u);
  const int factor = (options.min_side + 27) / 28;
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(rows[r].label, std::to_string(r));
    EXPECT_EQ(rows[r].shown, options.per_class);
    EXPECT_EQ(rows[r].total, 10);
    const cv::Mat decoded = cv::imdecode(std::vector<uchar>(rows[r].png.begin(), rows[r].png.end()), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(decoded.empty());
    EXPECT_EQ(decoded.rows, 28 * factor);
    EXPECT_EQ(decoded.cols, options.per_class * (28 * factor + 4) - 4);
    EXPECT_EQ(decoded.cols, rows[r].width);
    // Image k of the row is made of factor x factor blocks of its source pixels.
    auto source = [&](int k) {
      char name[32];
      std::snprintf(name, sizeof name, "%06d.png", static_cast<int>(r) * 10 + k);
      return cv::imread((tmp.path() / "synth" / "png" / std::to_string(r) / name).string(), cv::IMREAD_UNCHANGED);
    };
    const cv::Mat first = source(0), third = source(2);
    ASSERT_FALSE(first.empty() || third.empty());
    for (int y : {0, 5, 27})
      for (int x : {0, 13, 27})
        for (int dy = 0; dy < factor; ++dy) {
          EXPECT_EQ(decoded.at<uint8_t>(y * factor + dy, x * factor), first.at<uint8_t>(y, x));
          const int offset = 2 * (28 * factor + 4);
          EXPECT_EQ(decoded.at<uint8_t>(y * factor + dy, offset + x * factor + factor - 1), third.at<uint8_t>(y, x));
        }
  }
}

TEST(ReportImages, LargeImagesAreReducedAndUnreadableOnesNamed) {
  TempDir tmp;
  make_run(tmp.path(), card(kSha, 4, 4, 90.5), {}, 1, 2, 224);
  GridOptions options;
  std::vector<ImageRow> rows = image_rows((tmp.path() / "synth" / "png").string(), options);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].height, options.max_side);
  write(tmp.path() / "synth" / "png" / "0" / "000000.png", "not a png");
  const std::string message = error_of([&] { image_rows((tmp.path() / "synth" / "png").string(), options); });
  EXPECT_NE(message.find("000000.png"), std::string::npos) << message;
}

// A mixed-precision run is titled by its scheme, not by the --wbits default its card also records.
TEST(ReportRun, MixedRunsAreTitledByTheirScheme) {
  TempDir tmp;
  const fs::path run = tmp.path() / "mixed";
  Json c = card(kSha, 3.84, 4, 79.99);
  c["scheme"] = "W mixed A mixed";
  c.erase("abits");
  make_run(run, c);
  const std::string html = render_run_report(run.string()).html;
  EXPECT_NE(html.find("<h1>" + c["model"]["name"].get<std::string>() + " W mixed A mixed</h1>"), std::string::npos);
  EXPECT_NE(html.find("integer (W mixed A mixed)"), std::string::npos);
  EXPECT_NE(html.find("3.84 per weight on average"), std::string::npos);
  EXPECT_EQ(html.find("W3.84A"), std::string::npos);
}

TEST(ReportRun, HasEverySectionPlotsAndImages) {
  REQUIRE_GNUPLOT();
  TempDir tmp;
  const fs::path run = tmp.path() / "w4a4";
  make_run(run, card(kSha, 4, 4, 90.5));
  const HtmlReport report = render_run_report(run.string());
  const std::string& html = report.html;
  for (const char* id : {"card", "layers", "accuracy", "synthesis", "images", "evaluation"})
    EXPECT_NE(html.find(std::string("<section id=\"") + id + "\">"), std::string::npos) << id;
  // Bits, weight SQNR, activation SQNR and BN loss; no accuracy curve with one run.
  EXPECT_EQ(count(html, "<svg"), 4u);
  EXPECT_EQ(count(html, "</svg>"), 4u);
  EXPECT_NE(html.find("Only this run"), std::string::npos);
  EXPECT_EQ(data_uris(html).size(), 3u) << "one image row per label folder";
  // The card's table: every choice, results, sizes and stages.
  for (const char* text : {"Weight granularity", "symmetric, per output channel", "Activation range", "MMSE",
                           "91.25 %", "90.50 %", "0.75 points", "1,076,136 B", "164,023 B", "6.6x smaller",
                           "synthesis", "40.1", "yes (reused)", "43.6", kSha.c_str(), "test machine"})
    EXPECT_NE(html.find(text), std::string::npos) << text;
  // Layer names reach the plots, and the input point's infinite SQNR is called exact.
  EXPECT_NE(html.find("<text>layer1.0.conv1</text>"), std::string::npos);
  EXPECT_NE(html.find("Represented exactly (not drawn): input."), std::string::npos);
  // The integer evaluation's accumulators.
  EXPECT_NE(html.find("17 bits (conv1); 1 of 2 layers"), std::string::npos);
  EXPECT_TRUE(report.notes.size() == 1) << "only the accuracy curve is left out, found " << report.notes.size();
  EXPECT_EQ(render_run_report(run.string()).html, html) << "the report is deterministic";
}

TEST(ReportRun, LoadsNothingFromElsewhereAndRunsNoScript) {
  REQUIRE_GNUPLOT();
  TempDir tmp;
  make_run(tmp.path() / "run", card(kSha, 4, 4, 90.5));
  const std::string html = render_run_report((tmp.path() / "run").string()).html;
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(lower(html).find("<script"), std::string::npos);
  EXPECT_EQ(lower(html).find("@import"), std::string::npos);
  EXPECT_EQ(lower(html).find("@font-face"), std::string::npos);
  const std::regex attribute(R"re(\s(src|href)\s*=\s*["']([^"']*)["'])re", std::regex::icase);
  int attributes = 0;
  for (std::sregex_iterator it(html.begin(), html.end(), attribute), end; it != end; ++it, ++attributes) {
    const std::string value = (*it)[2];
    EXPECT_TRUE(value.rfind("data:", 0) == 0 || value.rfind("#", 0) == 0) << (*it)[0];
  }
  EXPECT_GT(attributes, 3);
  for (size_t at = html.find("url("); at != std::string::npos; at = html.find("url(", at + 1))
    EXPECT_EQ(html[at + 4], '#') << html.substr(at, 40);
}

TEST(ReportRun, EscapesNamesFromJsonAndFolders) {
  REQUIRE_GNUPLOT();
  TempDir tmp;
  Names names;
  names.layer = "<script>alert(1)</script>";
  names.model = "\"quoted\" & <b>bold</b>";
  names.choice = "<img id=\"injected\" src=x>";
  const fs::path run = tmp.path() / "run";
  make_run(run, card(kSha, 4, 4, 90.5, names), names);
  fs::rename(run / "synth" / "png" / "1", run / "synth" / "png" / "<i>1");
  const std::string html = render_run_report(run.string()).html;
  EXPECT_EQ(lower(html).find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);
  EXPECT_EQ(html.find("id=\"injected\""), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos) << "escaped in the tables";
  EXPECT_NE(html.find("&lt;script>alert(1)&lt;/script>"), std::string::npos) << "escaped by gnuplot in the plots";
  EXPECT_NE(html.find("&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;img id=&quot;injected&quot; src=x&gt;"), std::string::npos);
  EXPECT_NE(html.find("label &lt;i&gt;1"), std::string::npos);
}

TEST(ReportRun, MissingOptionalInputsAreNotedNotFatal) {
  TempDir tmp;
  const fs::path run = tmp.path() / "run";
  write(run / "card.json", Json({{"model", {{"name", "bare"}}}}).dump());
  const HtmlReport report = render_run_report(run.string(), HtmlReportOptions{"/nonexistent/dfq-gnuplot", {}});
  std::string notes;
  for (const std::string& n : report.notes) notes += n + "\n";
  for (const char* missing : {"choices", "results", "sizes", "stages", "per-layer bit widths", "quantize.json",
                              "model.sha256", "synth.json", "synth/png", "fp32.json", "integer.json"})
    EXPECT_NE(notes.find(missing), std::string::npos) << missing << " not in notes:\n" << notes;
  EXPECT_EQ(report.html.find("<svg"), std::string::npos);
  EXPECT_EQ(report.html.find("<img"), std::string::npos);
  EXPECT_GE(count(report.html, "class=\"note\""), report.notes.size());
  EXPECT_NE(report.html.find("<h1>bare</h1>"), std::string::npos);
}

TEST(ReportRun, MissingGnuplotLeavesPlotsOutWithOneNote) {
  TempDir tmp;
  make_run(tmp.path() / "run", card(kSha, 4, 4, 90.5));
  const HtmlReport report = render_run_report((tmp.path() / "run").string(), HtmlReportOptions{"/nonexistent/dfq-gnuplot", {}});
  EXPECT_EQ(report.html.find("<svg"), std::string::npos);
  EXPECT_EQ(data_uris(report.html).size(), 3u) << "images do not need gnuplot";
  const size_t plot_notes = std::count_if(report.notes.begin(), report.notes.end(), [](const std::string& n) {
    return n.find("gnuplot-nox") != std::string::npos;
  });
  EXPECT_EQ(plot_notes, 1u);
  EXPECT_EQ(count(report.html, "<p class=\"note\">Plot &quot;"), 4u) << "one note in place of each plot";
}

TEST(ReportRun, MissingCardAndMalformedFilesAreErrorsNamingTheFile) {
  TempDir tmp;
  const fs::path run = tmp.path() / "run";
  fs::create_directories(run);
  std::string message = error_of([&] { render_run_report(run.string()); });
  EXPECT_NE(message.find((run / "card.json").string()), std::string::npos) << message;
  message = error_of([&] { render_run_report((tmp.path() / "absent").string()); });
  EXPECT_NE(message.find("absent"), std::string::npos) << message;

  for (const char* file : {"card.json", "quantize.json", "synth.json", "fp32.json", "integer.json"}) {
    make_run(run, card(kSha, 4, 4, 90.5), {}, 1, 1);
    write(run / file, "{\"top1\": 91.2,");
    message = error_of([&] { render_run_report(run.string()); });
    EXPECT_NE(message.find((run / file).string()), std::string::npos) << file << ": " << message;
    EXPECT_NE(message.find("valid JSON"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  make_run(run, card(kSha, 4, 4, 90.5), {}, 1, 1);
  write(run / "fp32.json", "[1, 2]");
  message = error_of([&] { render_run_report(run.string()); });
  EXPECT_NE(message.find("fp32.json: expected a JSON object, found an array"), std::string::npos) << message;

  Json bad = card(kSha, 4, 4, 90.5);
  bad["results"]["integer"]["top1"] = "ninety";
  make_run(run, bad, {}, 1, 1);
  message = error_of([&] { render_run_report(run.string()); });
  EXPECT_NE(message.find("card.json field 'results.integer.top1': expected a number, found a string (\"ninety\")"),
            std::string::npos)
      << message;
  bad = card(kSha, 4, 4, 90.5);
  bad["stages"][1]["cached"] = 1;
  make_run(run, bad, {}, 1, 1);
  message = error_of([&] { render_run_report(run.string()); });
  EXPECT_NE(message.find("field 'stages[1].cached': expected true or false"), std::string::npos) << message;
}

TEST(ReportRun, SiblingRunsOfTheSameModelOnly) {
  TempDir tmp;
  make_run(tmp.path() / "w4a4", card(kSha, 4, 4, 88.25), {}, 1, 1);
  write(tmp.path() / "w8a8" / "card.json", card(kSha, 8, 8, 91.0).dump());
  write(tmp.path() / "w2a6" / "card.json", card(kSha, 2, 6, 61.5).dump());
  write(tmp.path() / "other-model" / "card.json", card(kOtherSha, 3, 3, 55.0).dump());
  write(tmp.path() / "broken" / "card.json", "{");
  Json no_integer = card(kSha, 6, 6, 0);
  no_integer["results"].erase("integer");
  write(tmp.path() / "no-integer" / "card.json", no_integer.dump());
  fs::create_directories(tmp.path() / "not-a-run");

  std::vector<std::string> notes;
  const std::vector<SameModelRun> runs = same_model_runs((tmp.path() / "w4a4").string() + "/", kSha, notes);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].folder, "w2a6");
  EXPECT_EQ(runs[1].folder, "w4a4");
  EXPECT_EQ(runs[2].folder, "w8a8");
  EXPECT_TRUE(runs[1].current);
  EXPECT_FALSE(runs[0].current || runs[2].current);
  EXPECT_DOUBLE_EQ(*runs[2].integer_top1, 91.0);
  EXPECT_DOUBLE_EQ(runs[0].abits, 6);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("broken/card.json"), std::string::npos) << notes[0];
  EXPECT_NE(notes[1].find("no-integer/card.json"), std::string::npos) << notes[1];
  EXPECT_NE(notes[1].find("results.integer.top1"), std::string::npos) << notes[1];

  REQUIRE_GNUPLOT();
  const std::string html = render_run_report((tmp.path() / "w4a4").string()).html;
  EXPECT_EQ(count(html, "<svg"), 5u) << "the accuracy curve is drawn";
  for (const char* label : {"<text>W2A6</text>", "<text>W4A4</text>", "<text>W8A8</text>"})
    EXPECT_NE(html.find(label), std::string::npos) << label;
  EXPECT_EQ(html.find("W3A3"), std::string::npos) << "a run of another model";
  EXPECT_EQ(html.find("other-model"), std::string::npos);
  EXPECT_NE(html.find("w4a4 (this run)"), std::string::npos);
  EXPECT_NE(html.find("88.25 %"), std::string::npos);
  EXPECT_NE(html.find("3 runs of this model"), std::string::npos);
}

TEST(ReportRun, WritesReportHtmlAtomically) {
  REQUIRE_GNUPLOT();
  TempDir tmp;
  const fs::path run = tmp.path() / "run";
  make_run(run, card(kSha, 4, 4, 90.5), {}, 2, 3);
  write_run_report(run.string());
  std::ifstream in(run / "report.html", std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), render_run_report(run.string()).html);
  for (const auto& entry : fs::directory_iterator(run))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  const std::string message = error_of([&] {
    write_run_report(run.string(), (tmp.path() / "missing-dir" / "r.html").string(), HtmlReportOptions{});
  });
  EXPECT_NE(message.find("missing-dir/r.html"), std::string::npos) << message;
}

// The quantization card names the scheme that was run: uniform bits in the
// title, or "mixed" where the ILP chose them, and with mixed activation bits
// the per-point ranges (not --abits) describe the activations.
TEST(QuantizationCard, TitleAndChoicesFollowMixedWeightAndActivationBits) {
  TempDir tmp;
  const fs::path dir = tmp.path();
  write(dir / "fp32.json", Json{{"top1", 91.0}, {"top5", 99.0}, {"images", 100}, {"bn_folded", 2}, {"preset", "cifar"}}.dump());
  write(dir / "integer.json", Json{{"top1", 90.0}, {"top5", 99.0}, {"images", 100}, {"kernels", "fast"}}.dump());
  const Json points = Json::array({{{"name", "input"}, {"range", "int8 [-127, 127]"}},
                                   {{"name", "relu"}, {"range", "uint3 [0, 7]"}},
                                   {{"name", "relu_2"}, {"range", "uint6 [0, 63]"}}});
  const Json layers = Json::array({{{"name", "conv1"}, {"bits", 6}}, {{"name", "conv2"}, {"bits", 3}}});
  Json q = {{"wbits", 8}, {"abits", 4}, {"layers", layers}, {"points", points}};
  RunRecord record;
  record.model_path = (dir / "none.pt").string(), record.model_sha256 = "0", record.data_dir = "data";
  const auto card_for = [&](const Json& quantize) {
    write(dir / "quantize.json", quantize.dump());
    write_quantization_card(dir.string(), record);
    std::ifstream in(dir / "card.md");
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::string md = card_for(q);
  EXPECT_NE(md.find("# Quantization card: none W8A4"), std::string::npos) << md;
  EXPECT_NE(md.find("off (uniform weight bits)"), std::string::npos) << md;
  EXPECT_NE(md.find("| First and last layer | same bits as the rest |"), std::string::npos) << md;

  q["mixed_precision"] = {{"size_budget_bits_per_weight", 4.0}, {"bops_budget", 1e9}, {"bops", 9e8},
                          {"candidate_activation_bits", Json::array()}};
  md = card_for(q);
  EXPECT_NE(md.find("# Quantization card: none W mixed A4"), std::string::npos) << md;
  EXPECT_NE(md.find("weights only (activations at the uniform bits)"), std::string::npos) << md;
  EXPECT_NE(md.find("and BOPs budget 1e+09"), std::string::npos) << md;
  EXPECT_EQ(md.find("same bits as the rest"), std::string::npos) << "claims uniform first/last bits: " << md;

  // Weights-only mixed: wbits is the stored bits per weight on average (20 x 6 + 80 x 3 over 100 weights).
  q["layers"] = Json::array({{{"name", "conv1"}, {"bits", 6}, {"parameters", 20}}, {{"name", "conv2"}, {"bits", 3}, {"parameters", 80}}});
  q["weight_bits_total"] = 360.0;
  card_for(q);
  Json written = Json::parse(std::ifstream(dir / "card.json"));
  EXPECT_DOUBLE_EQ(written["wbits"].get<double>(), 3.6);
  EXPECT_EQ(written["abits"].get<int>(), 4);

  q["mixed_precision"]["candidate_activation_bits"] = {2, 3, 4, 6, 8};
  md = card_for(q);
  written = Json::parse(std::ifstream(dir / "card.json"));
  EXPECT_FALSE(written.contains("abits")) << "no one activation width describes mixed activations";
  EXPECT_NE(md.find("# Quantization card: none W mixed A mixed"), std::string::npos) << md;
  EXPECT_NE(md.find("weights and the activations convolution/linear layers read"), std::string::npos) << md;
  EXPECT_NE(md.find("bits per tensor chosen with the weights'"), std::string::npos) << md;
  EXPECT_EQ(md.find(", 4 bits; real"), std::string::npos) << "claims uniform 4-bit activations: " << md;
  EXPECT_NE(md.find("| relu | uint3 [0, 7] |"), std::string::npos) << md;
  EXPECT_NE(md.find("| conv2 | 3 |"), std::string::npos) << md;
}

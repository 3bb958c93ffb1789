#include "server/logging.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace satlab::server {
namespace {

// %j: the log message as a JSON string body (quotes, backslashes and
// control characters escaped), so a JSON line stays valid whatever we log.
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            const std::string escaped =
                absl::StrCat("\\u00", absl::Hex(c, absl::kZeroPad2));
            dest.append(std::string_view(escaped));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

// Protobuf's own log lines, through spdlog so that they keep --log_format.
// Its errors while serving are about client bytes (a string field that is
// not UTF-8: one line per such request, answered INVALID_ARGUMENT), so they
// are debug output, not the operator's errors.
void ProtobufLog(google::protobuf::LogLevel level, const char* filename,
                 int line, const std::string& message) {
  spdlog::log(level == google::protobuf::LOGLEVEL_FATAL
                  ? spdlog::level::critical
                  : spdlog::level::debug,
              "protobuf {}:{}: {}", filename, line, message);
}

}  // namespace

absl::Status ConfigureLogging(absl::string_view format,
                              absl::string_view level) {
  const spdlog::level::level_enum parsed =
      spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_level: expected trace|debug|info|warn|error|off, got \"", level,
        "\""));
  }
  // Logs go to stderr; stdout carries only the "listening on" line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("satlab"));
  spdlog::set_level(parsed);
  if (format == "text") {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  } else if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonEscapedMessage>('j').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%f%z","level":"%l","message":"%j"})");
    spdlog::set_formatter(std::move(formatter));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_format: expected text or json, got \"", format, "\""));
  }
  google::protobuf::SetLogHandler(&ProtobufLog);
  return absl::OkStatus();
}

}  // namespace satlab::server

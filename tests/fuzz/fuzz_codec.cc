// The store codec's decoders (server/store/codec.h), which read bytes from
// disk and, later, from files users import. The first byte picks a mode:
// 0 decodes the rest as a whole frame (header, checksum and all); 1-3 wrap
// the rest in a valid header and checksum first, so the fuzzer explores
// the payload parsers of a state, a spec and request records instead of
// stopping at the checksum. Properties: no crash, no allocation beyond
// what the input can hold (ASan and -rss_limit_mb catch it), and a decoded
// value encodes back to exactly the bytes it came from (the encoding is
// canonical).
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "server/store/codec.h"
#include "tests/fuzz/fuzz_common.h"

namespace satlab::fuzz {
namespace {

std::string Frame(const char* magic, const uint8_t* data, size_t size) {
  std::string out(magic, 4);
  uint32_t version = store::kCodecVersion;
  uint64_t length = size;
  uint32_t crc = static_cast<uint32_t>(crc32_z(0, data, size));
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&length), 8);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  out.append(reinterpret_cast<const char*>(data), size);
  return out;
}

void CheckState(const std::string& in) {
  auto state = store::DecodeNetworkState(in);
  if (state.ok()) FUZZ_CHECK(store::EncodeNetworkState(*state) == in);
}

}  // namespace
}  // namespace satlab::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace satlab;  // NOLINT: harness entry point
  if (size == 0) return 0;
  const uint8_t* rest = data + 1;
  size_t n = size - 1;
  switch (data[0] % 4) {
    case 0:
      fuzz::CheckState(std::string(reinterpret_cast<const char*>(rest), n));
      break;
    case 1:
      fuzz::CheckState(fuzz::Frame("SLNS", rest, n));
      break;
    case 2: {
      std::string in = fuzz::Frame("SLSP", rest, n);
      auto spec = store::DecodeNetworkSpec(in);
      if (spec.ok()) FUZZ_CHECK(store::EncodeNetworkSpec(*spec) == in);
      break;
    }
    case 3: {
      std::string in = fuzz::Frame("SLRQ", rest, n);
      auto requests = store::DecodeRequests(in);
      if (requests.ok()) FUZZ_CHECK(store::EncodeRequests(*requests) == in);
      break;
    }
  }
  return 0;
}

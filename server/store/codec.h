// The portable binary encoding of a network's state (docs/storage.md): what
// the SQLite store keeps in its rows and what `satlab export` / `import`
// can use as a file format. Little-endian, versioned, with a CRC-32 of the
// payload. Decoding checks every size against the bytes actually present
// before it allocates, so a truncated, corrupt or hostile input is an error
// (DATA_LOSS for a bad frame or checksum, INVALID_ARGUMENT for a payload
// that does not parse), never a crash or a huge allocation.
#ifndef SATLAB_SERVER_STORE_CODEC_H_
#define SATLAB_SERVER_STORE_CODEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/engine/network.h"
#include "server/store/network_store.h"

namespace satlab::store {

// The format version this binary writes; it reads this one only (a later
// version adds readers for the older ones).
inline constexpr uint32_t kCodecVersion = 1;

// The whole state: spec, counters, parameters, optimizer slots.
std::string EncodeNetworkState(const engine::NetworkState& state);
absl::StatusOr<engine::NetworkState> DecodeNetworkState(absl::string_view in);

// The spec alone (what a listing shows without reading the tensors).
std::string EncodeNetworkSpec(const engine::NetworkSpec& spec);
absl::StatusOr<engine::NetworkSpec> DecodeNetworkSpec(absl::string_view in);

// A network's recent request records.
std::string EncodeRequests(const std::vector<RequestRecord>& requests);
absl::StatusOr<std::vector<RequestRecord>> DecodeRequests(absl::string_view in);

// A record as the durable stores keep it: its spec, state and request
// frames. RESOURCE_EXHAUSTED naming networks/{id} when memory runs out
// (nothing was written yet).
struct EncodedRecord {
  std::string spec;
  std::string state;
  std::string requests;
};
absl::StatusOr<EncodedRecord> EncodeRecord(const NetworkRecord& record);

}  // namespace satlab::store

#endif  // SATLAB_SERVER_STORE_CODEC_H_

#include "server/store/codec.h"

#include <zlib.h>

#include <cstring>
#include <limits>
#include <new>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace satlab::store {
namespace {

// Tensors are copied with memcpy in both directions: the format is
// little-endian, and so is every machine satlab builds for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the codec assumes a little-endian host");

// The enum codes are part of the file format: these pin them, so that a
// reordering of an engine enum breaks the build instead of old files.
static_assert(static_cast<int>(engine::Activation::kIdentity) == 0 &&
              static_cast<int>(engine::Activation::kSoftmax) == 6);
static_assert(static_cast<int>(engine::Loss::kCce) == 2);
static_assert(static_cast<int>(engine::InitScheme::kZeros) == 0 &&
              static_cast<int>(engine::InitScheme::kExplicit) == 6);
static_assert(static_cast<int>(engine::OptimizerKind::kAdam) == 1);
static_assert(static_cast<int>(engine::DType::kFloat64) == 1);
constexpr uint8_t kActivationCount = 7;
constexpr uint8_t kLossCount = 3;
constexpr uint8_t kInitSchemeCount = 7;
constexpr uint8_t kOptimizerCount = 2;
constexpr uint8_t kDTypeCount = 2;

constexpr size_t kMagicSize = 4;
constexpr size_t kHeaderSize = kMagicSize + 4 + 8 + 4;
constexpr char kStateMagic[] = "SLNS";
constexpr char kSpecMagic[] = "SLSP";
constexpr char kRequestsMagic[] = "SLRQ";

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, sizeof v); }
  void U64(uint64_t v) { Raw(&v, sizeof v); }
  void I32(int32_t v) { Raw(&v, sizeof v); }
  void I64(int64_t v) { Raw(&v, sizeof v); }
  void F64(double v) { Raw(&v, sizeof v); }
  void Bytes(absl::string_view s) {
    U64(s.size());
    out_.append(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) {
    // An empty matrix's data() may be null, which memcpy must not see.
    if (n > 0) out_.append(static_cast<const char*>(p), n);
  }

  template <typename T>
  void Matrix(const engine::RowMatrix<T>& m) {
    U64(static_cast<uint64_t>(m.rows()));
    U64(static_cast<uint64_t>(m.cols()));
    Raw(m.data(), sizeof(T) * static_cast<size_t>(m.size()));
  }
  // dtype code, rows, cols, elements row-major.
  void Tensor(const engine::AnyMatrix& m) {
    if (const auto* f = std::get_if<engine::RowMatrix<float>>(&m)) {
      U8(0);
      Matrix(*f);
    } else {
      U8(1);
      Matrix(std::get<engine::RowMatrix<double>>(m));
    }
  }
  void Tensors(const std::vector<engine::AnyMatrix>& ms) {
    U32(static_cast<uint32_t>(ms.size()));
    for (const auto& m : ms) Tensor(m);
  }

  std::string Framed(const char* magic) && {
    std::string framed;
    framed.reserve(kHeaderSize + out_.size());
    framed.append(magic, kMagicSize);
    Writer h;
    h.U32(kCodecVersion);
    h.U64(out_.size());
    h.U32(static_cast<uint32_t>(
        crc32_z(0, reinterpret_cast<const Bytef*>(out_.data()), out_.size())));
    framed += h.out_;
    framed += out_;
    return framed;
  }

 private:
  std::string out_;
};

// Reads from a bounded buffer; the first failure sticks and every later
// read returns zeros, so callers check ok() once at the end of a section
// (and before any allocation sized by what they read).
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  bool ok() const { return error_.ok(); }
  const absl::Status& status() const { return error_; }
  size_t remaining() const { return in_.size() - pos_; }
  void Fail(absl::string_view what) {
    if (error_.ok()) {
      error_ = absl::InvalidArgumentError(
          absl::StrCat("stored network state: ", what, " at byte ", pos_));
    }
  }

  bool Raw(void* p, size_t n) {
    if (!ok()) return false;
    if (n > remaining()) {
      Fail(absl::StrCat("truncated: ", n, " bytes needed, ", remaining(),
                        " left"));
      return false;
    }
    if (n == 0) return true;  // p may be an empty matrix's null data()
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  template <typename T>
  T Scalar() {
    T v{};
    if (!Raw(&v, sizeof v)) return T{};
    return v;
  }
  uint8_t U8() { return Scalar<uint8_t>(); }
  uint32_t U32() { return Scalar<uint32_t>(); }
  uint64_t U64() { return Scalar<uint64_t>(); }
  int32_t I32() { return Scalar<int32_t>(); }
  int64_t I64() { return Scalar<int64_t>(); }
  double F64() { return Scalar<double>(); }

  uint8_t Enum(uint8_t count, absl::string_view what) {
    uint8_t v = U8();
    if (ok() && v >= count) {
      Fail(absl::StrCat(what, ": unknown code ", v));
      return 0;
    }
    return v;
  }

  std::string Bytes(absl::string_view what) {
    uint64_t n = U64();
    if (ok() && n > remaining()) {
      Fail(absl::StrCat(what, ": length ", n, " exceeds the ", remaining(),
                        " bytes left"));
    }
    if (!ok()) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }

  // A count of items that each take at least `min_item_bytes`: never more
  // than the rest of the input can hold.
  uint32_t Count(size_t min_item_bytes, absl::string_view what) {
    uint32_t n = U32();
    if (ok() && n > remaining() / min_item_bytes) {
      Fail(absl::StrCat(what, ": count ", n, " exceeds what the ", remaining(),
                        " bytes left can hold"));
      return 0;
    }
    return n;
  }

  template <typename T>
  engine::RowMatrix<T> Matrix(absl::string_view what) {
    uint64_t rows = U64();
    uint64_t cols = U64();
    if (!ok()) return {};
    constexpr uint64_t kMaxDim = std::numeric_limits<int32_t>::max();
    if (rows > kMaxDim || cols > kMaxDim) {
      Fail(absl::StrCat(what, ": shape [", rows, ", ", cols,
                        "] exceeds the largest dimension ", kMaxDim));
      return {};
    }
    // rows, cols < 2^31: the product fits, and so does its byte size.
    uint64_t bytes = rows * cols * sizeof(T);
    if (bytes > remaining()) {
      Fail(absl::StrCat(what, ": shape [", rows, ", ", cols, "] needs ", bytes,
                        " bytes, ", remaining(), " left"));
      return {};
    }
    engine::RowMatrix<T> m(static_cast<Eigen::Index>(rows),
                           static_cast<Eigen::Index>(cols));
    Raw(m.data(), bytes);
    return m;
  }
  engine::AnyMatrix Tensor(absl::string_view what) {
    uint8_t dtype = Enum(kDTypeCount, absl::StrCat(what, ".dtype"));
    if (dtype == 0) return Matrix<float>(what);
    return Matrix<double>(what);
  }
  std::vector<engine::AnyMatrix> Tensors(absl::string_view what) {
    // A tensor takes at least 17 bytes (dtype, rows, cols).
    uint32_t n = Count(17, what);
    std::vector<engine::AnyMatrix> ms;
    for (uint32_t i = 0; i < n && ok(); ++i) {
      ms.push_back(Tensor(absl::StrCat(what, "[", i, "]")));
    }
    return ms;
  }

  absl::Status Finish() {
    if (ok() && remaining() != 0) {
      Fail(absl::StrCat(remaining(), " trailing bytes"));
    }
    return error_;
  }

 private:
  absl::string_view in_;
  size_t pos_ = 0;
  absl::Status error_;
};

// The payload of a frame with `magic`, after checking the magic, the
// version, the length and the checksum.
absl::StatusOr<absl::string_view> Unframe(absl::string_view in,
                                          const char* magic,
                                          absl::string_view what) {
  if (in.size() < kHeaderSize) {
    return absl::DataLossError(absl::StrCat(what, ": ", in.size(),
                                            " bytes, shorter than the ",
                                            kHeaderSize, "-byte header"));
  }
  if (in.substr(0, kMagicSize) != absl::string_view(magic, kMagicSize)) {
    return absl::DataLossError(
        absl::StrCat(what, ": expected magic \"", magic, "\""));
  }
  Reader h(in.substr(kMagicSize, kHeaderSize - kMagicSize));
  uint32_t version = h.U32();
  uint64_t length = h.U64();
  uint32_t crc = h.U32();
  if (version != kCodecVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": format version ", version, "; this binary reads ",
                     kCodecVersion, " (a newer satlab wrote it?)"));
  }
  absl::string_view payload = in.substr(kHeaderSize);
  if (length != payload.size()) {
    return absl::DataLossError(absl::StrCat(what, ": header says ", length,
                                            " payload bytes, ", payload.size(),
                                            " present"));
  }
  uint32_t actual = static_cast<uint32_t>(crc32_z(
      0, reinterpret_cast<const Bytef*>(payload.data()), payload.size()));
  if (actual != crc) {
    return absl::DataLossError(
        absl::StrCat(what, ": checksum mismatch (stored ", crc, ", computed ",
                     actual, "): the bytes were damaged"));
  }
  return payload;
}

void WriteSpec(Writer& w, const engine::NetworkSpec& spec) {
  w.I32(spec.input_size);
  w.U32(static_cast<uint32_t>(spec.layers.size()));
  for (const auto& l : spec.layers) {
    w.I32(l.units);
    w.U8(static_cast<uint8_t>(l.activation));
    w.F64(l.leaky_relu_slope);
  }
  w.U8(static_cast<uint8_t>(spec.loss));
  w.U8(static_cast<uint8_t>(spec.init.scheme));
  w.U64(spec.init.seed);
  w.F64(spec.init.mean);
  w.F64(spec.init.std);
  w.U32(static_cast<uint32_t>(spec.init.explicit_params.size()));
  for (const auto& p : spec.init.explicit_params) {
    w.Matrix<double>(p.weights);
    w.Matrix<double>(p.biases);
  }
  const auto& o = spec.optimizer;
  w.U8(static_cast<uint8_t>(o.kind));
  w.F64(o.learning_rate);
  w.F64(o.momentum);
  w.U8(o.nesterov ? 1 : 0);
  w.F64(o.weight_decay);
  w.F64(o.beta1);
  w.F64(o.beta2);
  w.F64(o.epsilon);
  w.U8(static_cast<uint8_t>(spec.dtype));
  w.F64(spec.saturation_threshold);
}

engine::NetworkSpec ReadSpec(Reader& r) {
  engine::NetworkSpec spec;
  spec.input_size = r.I32();
  // A layer takes 13 bytes (units, activation, slope).
  uint32_t layers = r.Count(13, "spec.layers");
  for (uint32_t i = 0; i < layers && r.ok(); ++i) {
    engine::LayerSpec l;
    l.units = r.I32();
    l.activation = static_cast<engine::Activation>(r.Enum(
        kActivationCount, absl::StrCat("spec.layers[", i, "].activation")));
    l.leaky_relu_slope = r.F64();
    spec.layers.push_back(l);
  }
  spec.loss = static_cast<engine::Loss>(r.Enum(kLossCount, "spec.loss"));
  spec.init.scheme = static_cast<engine::InitScheme>(
      r.Enum(kInitSchemeCount, "spec.init.scheme"));
  spec.init.seed = r.U64();
  spec.init.mean = r.F64();
  spec.init.std = r.F64();
  // Explicit parameters: two matrices of at least 16 bytes each.
  uint32_t explicit_layers = r.Count(32, "spec.init.explicit_params");
  for (uint32_t i = 0; i < explicit_layers && r.ok(); ++i) {
    engine::LayerParams p;
    std::string field = absl::StrCat("spec.init.explicit_params[", i, "]");
    p.weights = r.Matrix<double>(field + ".weights");
    engine::RowMatrix<double> b = r.Matrix<double>(field + ".biases");
    if (r.ok() && b.rows() != 1) {
      r.Fail(absl::StrCat(field, ".biases: expected 1 row, got ", b.rows()));
    }
    if (!r.ok()) break;
    p.biases = b;
    spec.init.explicit_params.push_back(std::move(p));
  }
  auto& o = spec.optimizer;
  o.kind = static_cast<engine::OptimizerKind>(
      r.Enum(kOptimizerCount, "spec.optimizer.kind"));
  o.learning_rate = r.F64();
  o.momentum = r.F64();
  o.nesterov = r.Enum(2, "spec.optimizer.nesterov") != 0;
  o.weight_decay = r.F64();
  o.beta1 = r.F64();
  o.beta2 = r.F64();
  o.epsilon = r.F64();
  spec.dtype = static_cast<engine::DType>(r.Enum(kDTypeCount, "spec.dtype"));
  spec.saturation_threshold = r.F64();
  return spec;
}

}  // namespace

std::string EncodeNetworkState(const engine::NetworkState& state) {
  Writer w;
  WriteSpec(w, state.spec);
  w.I64(state.step);
  w.I64(state.samples_seen);
  w.I64(state.optimizer_updates);
  w.Tensors(state.weights);
  w.Tensors(state.biases);
  w.U32(static_cast<uint32_t>(state.optimizer_slots.size()));
  for (const auto& slot : state.optimizer_slots) {
    w.Tensors(slot.weights);
    w.Tensors(slot.biases);
  }
  return std::move(w).Framed(kStateMagic);
}

absl::StatusOr<engine::NetworkState> DecodeNetworkState(absl::string_view in) {
  absl::StatusOr<absl::string_view> payload =
      Unframe(in, kStateMagic, "stored network state");
  if (!payload.ok()) return payload.status();
  Reader r(*payload);
  engine::NetworkState state;
  state.spec = ReadSpec(r);
  state.step = r.I64();
  state.samples_seen = r.I64();
  state.optimizer_updates = r.I64();
  state.weights = r.Tensors("weights");
  state.biases = r.Tensors("biases");
  // A slot takes at least 8 bytes (its two counts).
  uint32_t slots = r.Count(8, "optimizer_slots");
  for (uint32_t i = 0; i < slots && r.ok(); ++i) {
    engine::NetworkState::Slot slot;
    slot.weights = r.Tensors(absl::StrCat("optimizer_slots[", i, "].weights"));
    slot.biases = r.Tensors(absl::StrCat("optimizer_slots[", i, "].biases"));
    state.optimizer_slots.push_back(std::move(slot));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return state;
}

std::string EncodeNetworkSpec(const engine::NetworkSpec& spec) {
  Writer w;
  WriteSpec(w, spec);
  return std::move(w).Framed(kSpecMagic);
}

absl::StatusOr<engine::NetworkSpec> DecodeNetworkSpec(absl::string_view in) {
  absl::StatusOr<absl::string_view> payload =
      Unframe(in, kSpecMagic, "stored network spec");
  if (!payload.ok()) return payload.status();
  Reader r(*payload);
  engine::NetworkSpec spec = ReadSpec(r);
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return spec;
}

std::string EncodeRequests(const std::vector<RequestRecord>& requests) {
  Writer w;
  w.U32(static_cast<uint32_t>(requests.size()));
  for (const auto& q : requests) {
    w.Bytes(q.request_id);
    w.U64(q.fingerprint);
    w.Bytes(q.response);
  }
  return std::move(w).Framed(kRequestsMagic);
}

absl::StatusOr<std::vector<RequestRecord>> DecodeRequests(
    absl::string_view in) {
  absl::StatusOr<absl::string_view> payload =
      Unframe(in, kRequestsMagic, "stored request records");
  if (!payload.ok()) return payload.status();
  Reader r(*payload);
  // A record takes at least 24 bytes (two lengths and the fingerprint).
  uint32_t n = r.Count(24, "requests");
  std::vector<RequestRecord> requests;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    RequestRecord q;
    q.request_id = r.Bytes(absl::StrCat("requests[", i, "].request_id"));
    q.fingerprint = r.U64();
    q.response = r.Bytes(absl::StrCat("requests[", i, "].response"));
    requests.push_back(std::move(q));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return requests;
}

absl::StatusOr<EncodedRecord> EncodeRecord(const NetworkRecord& record) {
  try {
    EncodedRecord e;
    e.spec = EncodeNetworkSpec(record.state.spec);
    e.state = EncodeNetworkState(record.state);
    e.requests = EncodeRequests(record.requests);
    return e;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server ran out of memory to copy networks/",
                     record.id, "; nothing changed"));
  }
}

}  // namespace satlab::store

// The codec alone: bitwise round trips, and every damaged or truncated
// input rejected with the right code.
#include "server/store/codec.h"

#include <cstring>

#include "gtest/gtest.h"
#include "tests/store/store_contract.h"

namespace satlab::store::testing {
namespace {

using engine::DType;

TEST(CodecTest, StateRoundTripIsBitwise) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    for (Optimizer opt :
         {Optimizer::kSgd, Optimizer::kMomentum, Optimizer::kAdam}) {
      NetworkRecord r = MakeRecord("c", dtype, opt, 11, {5, 9, 1});
      std::string bytes = EncodeNetworkState(r.state);
      absl::StatusOr<engine::NetworkState> back = DecodeNetworkState(bytes);
      ASSERT_TRUE(back.ok()) << back.status();
      NetworkRecord copy = r;
      copy.state = *back;
      EXPECT_TRUE(SameRecord(copy, r));
      // Deterministic: the same state encodes to the same bytes.
      EXPECT_EQ(EncodeNetworkState(*back), bytes);
    }
  }
}

TEST(CodecTest, ExplicitInitParamsRoundTrip) {
  NetworkRecord r = MakeRecord("c", DType::kFloat64, Optimizer::kSgd, 3);
  r.state.spec.init.scheme = engine::InitScheme::kExplicit;
  engine::LayerParams p;
  p.weights = engine::RowMatrix<double>::Constant(3, 5, -0.5);
  p.biases = engine::RowVector<double>::Constant(5, 0.25);
  r.state.spec.init.explicit_params.push_back(p);
  absl::StatusOr<engine::NetworkSpec> back =
      DecodeNetworkSpec(EncodeNetworkSpec(r.state.spec));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->init.explicit_params.size(), 1u);
  EXPECT_EQ(back->init.explicit_params[0].weights, p.weights);
  EXPECT_EQ(back->init.explicit_params[0].biases, p.biases);
}

// Found by fuzz_codec: an empty tensor's data() is null.
TEST(CodecTest, EmptyTensorsRoundTrip) {
  engine::NetworkState state;
  state.weights.push_back(engine::RowMatrix<float>(0, 3));
  state.biases.push_back(engine::RowMatrix<double>(1, 0));
  std::string bytes = EncodeNetworkState(state);
  absl::StatusOr<engine::NetworkState> back = DecodeNetworkState(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->weights.size(), 1u);
  EXPECT_EQ(std::get<0>(back->weights[0]).cols(), 3);
  EXPECT_EQ(std::get<1>(back->biases[0]).cols(), 0);
  EXPECT_EQ(EncodeNetworkState(*back), bytes);
}

TEST(CodecTest, RequestsRoundTrip) {
  NetworkRecord r =
      MakeRecord("c", DType::kFloat32, Optimizer::kSgd, 4, {2, 1}, 5);
  absl::StatusOr<std::vector<RequestRecord>> back =
      DecodeRequests(EncodeRequests(r.requests));
  ASSERT_TRUE(back.ok()) << back.status();
  NetworkRecord copy = r;
  copy.requests = *back;
  EXPECT_TRUE(SameRecord(copy, r));
}

TEST(CodecTest, EveryTruncationIsRejected) {
  NetworkRecord r =
      MakeRecord("c", DType::kFloat32, Optimizer::kAdam, 2, {2, 3, 1});
  std::string bytes = EncodeNetworkState(r.state);
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::Status s = DecodeNetworkState(bytes.substr(0, n)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << n << ": " << s;
  }
}

TEST(CodecTest, EveryFlippedPayloadBitFailsTheChecksum) {
  NetworkRecord r =
      MakeRecord("c", DType::kFloat64, Optimizer::kSgd, 2, {2, 1});
  std::string bytes = EncodeNetworkState(r.state);
  for (size_t i = 20; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x10;
    absl::Status s = DecodeNetworkState(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << i << ": " << s;
  }
}

TEST(CodecTest, NewerVersionAndWrongKindAreRejected) {
  NetworkRecord r =
      MakeRecord("c", DType::kFloat64, Optimizer::kSgd, 2, {2, 1});
  std::string bytes = EncodeNetworkState(r.state);
  std::string newer = bytes;
  uint32_t v = kCodecVersion + 1;
  std::memcpy(&newer[4], &v, 4);
  absl::Status s = DecodeNetworkState(newer).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("version 2"), std::string::npos) << s;
  s = DecodeNetworkSpec(bytes).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

}  // namespace
}  // namespace satlab::store::testing

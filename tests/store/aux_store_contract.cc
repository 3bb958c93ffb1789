// The TEST_Ps of aux_store_contract.h, compiled into each executable that
// instantiates them.
#include "tests/store/aux_store_contract.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace satlab::store::testing {
namespace {

ExperimentRecord Experiment(const std::string& id, int seed) {
  ExperimentRecord r;
  r.id = id;
  r.spec = absl::StrCat("spec-", seed, std::string("\0\1\2", 3));
  r.status = seed % 3;
  r.curves = std::string(1000 + seed, static_cast<char>(seed));
  r.summary = "";
  r.create_time = absl::FromUnixNanos(1'700'000'000'000'000'001 + seed);
  r.update_time = r.create_time + absl::Seconds(1);
  return r;
}

void ExpectSame(const ExperimentRecord& a, const ExperimentRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.spec, b.spec);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.curves, b.curves);
  EXPECT_EQ(a.summary, b.summary);
  EXPECT_EQ(a.create_time, b.create_time);
  EXPECT_EQ(a.update_time, b.update_time);
}

TEST_P(AuxStoreTest, ExperimentsCreateLoadListUpdateDelete) {
  AuxStores s = Open();
  ASSERT_NE(s.experiments, nullptr);
  std::vector<ExperimentRecord> records;
  for (const char* id : {"e2", "e0", "e1"}) {
    records.push_back(Experiment(id, static_cast<int>(records.size())));
    ASSERT_TRUE(s.experiments->CreateExperiment(records.back()).ok());
  }
  absl::Status dup = s.experiments->CreateExperiment(Experiment("e1", 9));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  EXPECT_NE(dup.message().find("experiments/e1"), std::string::npos) << dup;

  auto page = s.experiments->ListExperiments("", 2);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, "e0");
  EXPECT_EQ((*page)[1].id, "e1");
  page = s.experiments->ListExperiments("e1", 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  ExpectSame((*page)[0], records[0]);
  EXPECT_TRUE(s.experiments->ListExperiments("", 0)->empty());

  ExperimentRecord done = records[1];  // e0
  done.status = 7;
  done.curves = "curves!";
  done.summary = std::string("summary\0bytes", 13);
  done.update_time += absl::Minutes(5);
  done.spec = "ignored: the spec is fixed at creation";
  ASSERT_TRUE(s.experiments->UpdateExperiment(done).ok());
  done.spec = records[1].spec;

  ExperimentRecord stale = records[2];  // e1 with another create_time
  stale.create_time += absl::Nanoseconds(1);
  EXPECT_EQ(s.experiments->UpdateExperiment(stale).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(s.experiments->UpdateExperiment(Experiment("nope", 1)).code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(s.experiments->DeleteExperiment("e2").ok());
  absl::Status gone = s.experiments->DeleteExperiment("e2");
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
  EXPECT_NE(gone.message().find("experiments/e2"), std::string::npos) << gone;
  // Deleted whole: the id can be created again (a spec kept apart from its
  // row, as SQLite keeps it, would collide here).
  ExperimentRecord again = Experiment("e2", 5);
  ASSERT_TRUE(s.experiments->CreateExperiment(again).ok());
  ASSERT_TRUE(s.experiments->DeleteExperiment("e2").ok());

  if (s.durable) {
    s = AuxStores();
    s = Open();
  }
  auto got = s.experiments->LoadExperiment("e0");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, done);
  got = s.experiments->LoadExperiment("e1");
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(*got, records[2]);
  EXPECT_EQ(s.experiments->LoadExperiment("e2").status().code(),
            absl::StatusCode::kNotFound);
}

std::vector<MetricRecord> Events(int64_t from, int64_t to) {
  std::vector<MetricRecord> events;
  for (int64_t seq = from; seq <= to; ++seq) {
    events.push_back({seq, absl::FromUnixNanos(seq * 1000),
                      absl::StrCat("event-", seq, std::string(1, '\0'))});
  }
  return events;
}

TEST_P(AuxStoreTest, MetricHistoryIsBoundedOrderedAndPerNetwork) {
  AuxStores s = Open(/*per_network=*/5);
  ASSERT_NE(s.metrics, nullptr);
  ASSERT_TRUE(s.metrics->AppendMetrics("a", Events(1, 3)).ok());
  ASSERT_TRUE(s.metrics->AppendMetrics("b", Events(10, 11)).ok());
  ASSERT_TRUE(s.metrics->AppendMetrics("a", Events(4, 8)).ok());
  // A seq at or below a stored one is refused whole.
  std::vector<MetricRecord> bad = Events(9, 9);
  bad.push_back(Events(8, 8)[0]);
  absl::Status s_bad = s.metrics->AppendMetrics("a", bad);
  EXPECT_EQ(s_bad.code(), absl::StatusCode::kInvalidArgument) << s_bad;
  EXPECT_NE(s_bad.message().find("events[1].seq"), std::string::npos) << s_bad;

  if (s.durable) {
    s = AuxStores();
    s = Open(5);
  }
  auto a = s.metrics->ReadMetrics("a", 0, 100);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 5u);  // the 5 newest of 1..8; 9 was refused
  for (size_t i = 0; i < a->size(); ++i) {
    MetricRecord want = Events(4 + i, 4 + i)[0];
    EXPECT_EQ((*a)[i].seq, want.seq);
    EXPECT_EQ((*a)[i].time, want.time);
    EXPECT_EQ((*a)[i].event, want.event);
  }
  a = s.metrics->ReadMetrics("a", 6, 2);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].seq, 6);
  EXPECT_EQ((*a)[1].seq, 7);
  EXPECT_EQ(s.metrics->ReadMetrics("b", 0, 10)->size(), 2u);
  EXPECT_TRUE(s.metrics->ReadMetrics("nobody", 0, 10)->empty());

  ASSERT_TRUE(s.metrics->DeleteMetrics("a").ok());
  ASSERT_TRUE(s.metrics->DeleteMetrics("a").ok());
  EXPECT_TRUE(s.metrics->ReadMetrics("a", 0, 10)->empty());
  EXPECT_EQ(s.metrics->ReadMetrics("b", 0, 10)->size(), 2u);
  // After a deletion the network starts over.
  EXPECT_TRUE(s.metrics->AppendMetrics("a", Events(1, 1)).ok());
}

// Experiment claims (issue 14 item 4): offered units, one owner at a time,
// expiry, progress, release, the free-unit search, durability.
TEST_P(AuxStoreTest, ExperimentClaimsOneOwnerExpireReportAndPersist) {
  AuxStores s = Open();
  ASSERT_NE(s.experiments, nullptr);
  ExperimentStore& e = *s.experiments;
  const absl::Duration ttl = absl::Seconds(30);
  EXPECT_EQ(e.OfferExperimentUnits("x", 2, "", ttl).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      e.ClaimExperimentUnit("x", 0, "a", absl::ZeroDuration()).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e.ListExperimentUnits("x")->empty());
  EXPECT_EQ(e.ClaimExperimentUnit("x", 0, "a", ttl).status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(e.OfferExperimentUnits("x", 3, "a", ttl).ok());
  auto units = e.ListExperimentUnits("x");
  ASSERT_TRUE(units.ok()) << units.status();
  ASSERT_EQ(units->size(), 4u);
  EXPECT_EQ((*units)[0].unit, kCoordinatorUnit);
  EXPECT_EQ((*units)[0].owner, "a");
  EXPECT_GT((*units)[0].expires, absl::Now() + absl::Seconds(20));
  for (int v = 0; v < 3; ++v) {
    EXPECT_EQ((*units)[v + 1].unit, v);
    EXPECT_EQ((*units)[v + 1].owner, "");
    EXPECT_FALSE((*units)[v + 1].done);
    EXPECT_EQ((*units)[v + 1].progress, "");
  }

  // The coordinator is a's: b is refused, naming the holder; a renews.
  auto held = e.ClaimExperimentUnit("x", kCoordinatorUnit, "b", ttl);
  EXPECT_EQ(held.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(held.status().message().find("experiments/x"), std::string::npos);
  EXPECT_NE(held.status().message().find("(a,"), std::string::npos)
      << held.status();
  ASSERT_TRUE(e.ClaimExperimentUnit("x", kCoordinatorUnit, "a", ttl).ok());

  // Free units go to whoever asks, lowest first, each once.
  auto free0 = e.ClaimFreeExperimentUnit("b", ttl);
  ASSERT_TRUE(free0.ok()) << free0.status();
  ASSERT_TRUE(free0->has_value());
  EXPECT_EQ((*free0)->experiment_id, "x");
  EXPECT_EQ((*free0)->unit, 0);
  EXPECT_EQ((*free0)->owner, "b");
  auto free1 = e.ClaimFreeExperimentUnit("c", ttl);
  ASSERT_TRUE(free1.ok() && free1->has_value());
  EXPECT_EQ((*free1)->unit, 1);
  EXPECT_EQ(e.ClaimExperimentUnit("x", 1, "b", ttl).status().code(),
            absl::StatusCode::kAborted);

  // Progress by the holder only; done units are not offered again.
  ASSERT_TRUE(e.ReportExperimentUnit("x", 0, "b", ttl, "half", false).ok());
  EXPECT_EQ(e.ReportExperimentUnit("x", 0, "c", ttl, "stolen", true).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(e.ReportExperimentUnit("x", 7, "b", ttl, "?", true).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(e.ReportExperimentUnit("x", 0, "b", ttl,
                                     std::string("all\0bytes", 9), true)
                  .ok());
  // c gives variant 1 back: it is free again at once.
  ASSERT_TRUE(e.ReleaseExperimentUnit("x", 1, "b").ok());  // not b's: nothing
  EXPECT_EQ(e.ClaimExperimentUnit("x", 1, "b", ttl).status().code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(e.ReleaseExperimentUnit("x", 1, "c").ok());
  auto again = e.ClaimFreeExperimentUnit("b", ttl);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->unit, 1);
  EXPECT_EQ((*again)->owner, "b");

  // A claim that lapses may be taken by another owner; the old holder's
  // report is then refused.
  auto short_claim =
      e.ClaimExperimentUnit("x", 1, "b", absl::Milliseconds(200));
  ASSERT_TRUE(short_claim.ok()) << short_claim.status();
  absl::SleepFor(absl::Milliseconds(400));
  auto free2 = e.ClaimFreeExperimentUnit("c", ttl);
  ASSERT_TRUE(free2.ok() && free2->has_value());
  EXPECT_EQ((*free2)->unit, 1);
  EXPECT_EQ(e.ReportExperimentUnit("x", 1, "b", ttl, "late", true).code(),
            absl::StatusCode::kAborted);
  auto last = e.ClaimFreeExperimentUnit("d", ttl);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->unit, 2);
  auto none = e.ClaimFreeExperimentUnit("d", ttl);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  if (s.durable) {
    s = AuxStores();
    s = Open();
  }
  units = s.experiments->ListExperimentUnits("x");
  ASSERT_TRUE(units.ok()) << units.status();
  ASSERT_EQ(units->size(), 4u);
  EXPECT_EQ((*units)[1].owner, "b");
  EXPECT_TRUE((*units)[1].done);
  EXPECT_EQ((*units)[1].progress, std::string("all\0bytes", 9));
  EXPECT_EQ((*units)[2].owner, "c");
  EXPECT_EQ((*units)[3].owner, "d");

  // Offering again starts over; deleting removes them (twice is fine).
  ASSERT_TRUE(s.experiments->OfferExperimentUnits("x", 1, "z", ttl).ok());
  units = s.experiments->ListExperimentUnits("x");
  ASSERT_TRUE(units.ok());
  ASSERT_EQ(units->size(), 2u);
  EXPECT_EQ((*units)[0].owner, "z");
  EXPECT_EQ((*units)[1].progress, "");
  ASSERT_TRUE(s.experiments->DeleteExperimentUnits("x").ok());
  ASSERT_TRUE(s.experiments->DeleteExperimentUnits("x").ok());
  EXPECT_TRUE(s.experiments->ListExperimentUnits("x")->empty());
}

}  // namespace
}  // namespace satlab::store::testing

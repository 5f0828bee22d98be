// The server's metrics (server/app/server_metrics.h) over real cores on a real PostgreSQL 15:
// counters move as devices check in and an artifact is fetched, the fleet census counts
// devices, versions, rollouts and gates from the database (and is not retaken on every
// scrape), and Prometheus' promtool accepts the whole /metrics text.
#include "app/server_metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "auth/token_store.h"
#include "core_fixture.h"
#include "fleet/check_in.h"
#include "fleet/rollout_controller.h"
#include "fleet/rollout_manager.h"
#include "grpc/rpc_metrics.h"
#include "libpq_leak_suppression.h"
#include "modelfleet/crypto.h"
#include "modelfleet/v1/fleet.grpc.pb.h"
#include "modelfleet/v1/registry.grpc.pb.h"
#include "postgres_environment.h"
#include "process.h"
#include "promtool.h"
#include "registry/artifact_cache.h"
#include "registry/registry.h"
#include "test_data.h"

namespace modelfleet::app {
namespace {

using testing::Cluster;

[[maybe_unused]] ::testing::Environment* const kPostgres =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

// The value of the sample `series` ("name" or "name{a=\"b\"}") in `text`; nullopt if absent.
std::optional<double> Sample(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      const size_t start = at + prefix.size();
      return std::stod(text.substr(start, text.find('\n', start) - start));
    }
    at += prefix.size();
  }
  return std::nullopt;
}

bool Eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class ServerMetricsTest : public testing::CoreFixture {
 protected:
  ServerMetricsTest() : CoreFixture("server_metrics") {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(CoreFixture::SetUp());
    tokens_ = std::make_unique<auth::TokenStore>(*pool_);
    ASSERT_NO_FATAL_FAILURE(CreateMatPerson());
  }

  // `n` accepted devices with a device credential each; their principals.
  std::vector<auth::Principal> AddDevices(int n, int first = 0) {
    std::vector<auth::Principal> principals;
    Status s = pool_->Write([&](db::Tx& tx) -> Status {
      for (int i = first; i < first + n; ++i) {
        const std::string id = "dev-" + std::to_string(i);
        MF_ASSIGN_OR_RETURN(auto token, tx.Exec("INSERT INTO api_tokens (name, role, token_hash, created_by) "
                                                "VALUES ($1, 'device', $2, 'test') RETURNING id",
                                                {id, Sha256Hex(id)}));
        MF_RETURN_IF_ERROR(StatusOf(tx.Exec("INSERT INTO devices (device_id, hardware_id, admission, site, token_id) "
                                            "VALUES ($1, $2, 'ACCEPTED', 'berlin', $3)",
                                            {id, "hw-" + id, token[0].Int(0)})));
        principals.push_back({token[0].Int(0), id, v1::ROLE_DEVICE});
      }
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return principals;
  }

  static v1::CheckInRequest Running(const std::string& version) {
    v1::CheckInRequest request;
    auto* running = request.add_running();
    running->set_model("mat-person");
    running->set_version(version);
    request.set_agent_state(v1::AGENT_STATE_IDLE);
    auto* t = request.add_telemetry();
    t->set_model("mat-person");
    t->set_version(version);
    t->set_inference_count(100);
    t->set_error_count(2);
    t->mutable_latency()->set_p95_ms(12);
    return request;
  }

  std::unique_ptr<auth::TokenStore> tokens_;
};

TEST_F(ServerMetricsTest, CountersMoveAsTheFleetChecksInAndPromtoolAcceptsTheText) {
  std::vector<auth::Principal> devices = AddDevices(30);
  fleet::CheckInOptions options;
  options.flush_interval = std::chrono::milliseconds(50);
  fleet::CheckInService check_in(*pool_, options);
  fleet::RolloutController controller(*pool_, *rollouts_, std::chrono::milliseconds(50));
  controller.Start();

  metrics::Registry metrics;
  // As RunServer wires it: the RPC families too, so the whole text is checked.
  grpc_edge::RpcMetrics rpc(metrics, {v1::DeviceService::service_full_name(), v1::FleetService::service_full_name(),
                                      v1::RegistryService::service_full_name()});
  metrics::CollectorRegistration registration = RegisterServerMetrics(
      metrics, {.pool = pool_.get(),
                .check_in = &check_in,
                .artifact_cache = cache_.get(),
                .tokens = tokens_.get(),
                .controller = &controller,
                .rollouts = rollouts_.get(),
                .census_refresh = std::chrono::milliseconds(0)});  // every scrape: this test wants fresh counts

  ASSERT_TRUE(Eventually([&] { return check_in.Stats().devices_preloaded; }));
  ASSERT_TRUE(Eventually([&] { return controller.is_leader(); }));
  const std::string before = metrics.Render();
  ASSERT_TRUE(Sample(before, "modelfleet_fleet_devices{admission=\"ACCEPTED\"}")) << before;
  EXPECT_EQ(*Sample(before, "modelfleet_fleet_devices{admission=\"ACCEPTED\"}"), 30);
  EXPECT_EQ(*Sample(before, "modelfleet_check_ins_total{path=\"without_blocking\"}"), 0);

  // A running rollout with gates, so the census reads its gate values.
  v1::CreateRolloutRequest request;
  request.set_model("mat-person");
  request.set_version("1.1.0");
  request.set_target("*");
  auto* stage = request.add_stages();
  stage->set_percent(10);
  stage->set_success_threshold(0.9);
  stage->set_soak_seconds(3600);  // stays in its stage
  stage->mutable_gates()->set_max_error_ratio(0.5);
  auto rollout = rollouts_->Create(request, admin_);
  ASSERT_TRUE(rollout) << rollout.error().ToString();
  check_in.RolloutsChanged();

  // Two rounds of check-ins: the first may need the database (the second is from memory).
  int answered_from_memory = 0;
  for (int round = 0; round < 2; ++round) {
    for (const auto& device : devices) {
      auto answer = check_in.CheckInWithoutBlocking(device, Running("1.0.0"));
      if (answer) {
        ASSERT_TRUE(*answer) << answer->error().ToString();
        ++answered_from_memory;
      } else {
        auto slow = check_in.CheckIn(device, Running("1.0.0"));
        ASSERT_TRUE(slow) << slow.error().ToString();
      }
    }
  }
  ASSERT_TRUE(check_in.Flush().ok());
  // The object store is read once; the second Get is a cache hit.
  const std::string bytes = testing::PatternBytes(1000, '0');
  const std::string digest = Sha256Hex(bytes);
  ASSERT_TRUE(cache_->Get(digest, bytes.size(), "sha256/" + digest));
  ASSERT_TRUE(cache_->Get(digest, bytes.size(), "sha256/" + digest));

  const std::string after = metrics.Render();
  const double without_blocking = *Sample(after, "modelfleet_check_ins_total{path=\"without_blocking\"}");
  const double may_block = *Sample(after, "modelfleet_check_ins_total{path=\"may_block\"}");
  EXPECT_EQ(without_blocking, answered_from_memory);
  EXPECT_EQ(without_blocking + may_block, 60) << after;
  EXPECT_GE(*Sample(after, "modelfleet_device_cache_hits_total"), 30);
  EXPECT_EQ(*Sample(after, "modelfleet_device_cache_devices"), 30);
  EXPECT_EQ(*Sample(after, "modelfleet_write_behind_records_total"), 60);
  EXPECT_GE(*Sample(after, "modelfleet_write_behind_rows_written_total{kind=\"status\"}"), 30);
  EXPECT_GT(*Sample(after, "modelfleet_db_pool_acquisitions_total"),
            *Sample(before, "modelfleet_db_pool_acquisitions_total"));
  EXPECT_GE(*Sample(after, "modelfleet_db_pool_in_use_connections"), 1) << "the controller's session holds one";
  EXPECT_EQ(*Sample(after, "modelfleet_db_up"), 1);
  EXPECT_EQ(*Sample(after, "modelfleet_object_store_reads_total"), 1);
  EXPECT_EQ(*Sample(after, "modelfleet_object_store_read_bytes_total"), 1000);
  EXPECT_EQ(*Sample(after, "modelfleet_artifact_cache_hits_total"), 1);
  EXPECT_EQ(*Sample(after, "modelfleet_artifact_cache_size_bytes"), 1000);
  EXPECT_EQ(*Sample(after, "modelfleet_rollout_controller_leader"), 1);
  EXPECT_EQ(*Sample(after, "modelfleet_rollouts{state=\"RUNNING\"}"), 1);
  EXPECT_EQ(*Sample(after, "modelfleet_rollouts{state=\"COMPLETED\"}"), 0);
  EXPECT_EQ(*Sample(after, "modelfleet_fleet_devices_running{model=\"mat-person\",version=\"1.0.0\"}"), 30) << after;
  const std::string gate = "{rollout_id=\"" + rollout->rollout_id() + "\",gate=\"error_ratio\"}";
  EXPECT_TRUE(Sample(after, "modelfleet_rollout_gate_value" + gate)) << after;
  EXPECT_EQ(*Sample(after, "modelfleet_rollout_gate_limit" + gate), 0.5);
  EXPECT_EQ(*Sample(after, "modelfleet_metrics_dropped_samples_total"), 0) << "a collector wrote an invalid sample";

  const testing::PromtoolVerdict verdict = testing::CheckWithPromtool(after);
  EXPECT_TRUE(verdict.ok) << verdict.output << "\n" << after;

  registration.Reset();  // before the parts it reads go
  controller.Stop();
}

TEST_F(ServerMetricsTest, TheFleetCensusIsTakenAtMostOncePerRefresh) {
  AddDevices(5);
  metrics::Registry metrics;
  metrics::CollectorRegistration cached = RegisterServerMetrics(
      metrics, {.pool = pool_.get(), .rollouts = rollouts_.get(), .census_refresh = std::chrono::hours(1)});
  EXPECT_EQ(Sample(metrics.Render(), "modelfleet_fleet_devices{admission=\"ACCEPTED\"}"), 5);
  AddDevices(3, 100);
  EXPECT_EQ(Sample(metrics.Render(), "modelfleet_fleet_devices{admission=\"ACCEPTED\"}"), 5)
      << "a scrape within the refresh interval queried the database again";
  cached.Reset();

  metrics::Registry fresh;
  metrics::CollectorRegistration every_scrape =
      RegisterServerMetrics(fresh, {.pool = pool_.get(), .rollouts = rollouts_.get(), .census_refresh = {}});
  EXPECT_EQ(Sample(fresh.Render(), "modelfleet_fleet_devices{admission=\"ACCEPTED\"}"), 8);
}

}  // namespace
}  // namespace modelfleet::app

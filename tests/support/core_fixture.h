// Test support: the server's cores on a fresh database of the binary's PostgreSQL cluster
// (register PostgresEnvironment): every migration applied, a local blob store, the artifact
// cache, the registry and the rollout manager. What the fleet, events and metrics integration
// tests stand on; each derives its fixture from CoreFixture and adds what it needs.
//
// Header-only; a binary that uses it links mf_registry, mf_fleet and mf_test_support.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "auth/principal.h"
#include "blob/local_blob_store.h"
#include "db/migrations.h"
#include "db/pool.h"
#include "fleet/rollout_manager.h"
#include "modelfleet/v1/admin.pb.h"
#include "modelfleet/v1/events.pb.h"
#include "modelfleet/v1/fleet.pb.h"
#include "modelfleet/v1/registry.pb.h"
#include "modelfleet/v1/webhooks.pb.h"
#include "postgres_environment.h"
#include "process.h"
#include "registry/artifact_cache.h"
#include "registry/registry.h"
#include "test_data.h"

namespace modelfleet::testing {

// protobuf builds a .proto file's descriptors on first use and publishes them through its own
// once-flags, which ThreadSanitizer cannot see into (Debian's libprotobuf is not instrumented):
// a first use on a core's thread racing one on the test's reads as a data race. Built here, on
// the main thread before any thread starts, their publication is ordered by thread creation.
inline void BuildProtobufDescriptors() {
  for (const google::protobuf::Descriptor* d :
       {v1::Manifest::descriptor(), v1::CreateModelRequest::descriptor(), v1::CreateTokenRequest::descriptor(),
        v1::CheckInRequest::descriptor(), v1::Event::descriptor(), v1::ListWebhooksRequest::descriptor()}) {
    (void)d->file()->service_count();
  }
}

class CoreFixture : public ::testing::Test {
 protected:
  // `name` names the temporary folder and prefixes the databases ("fleet_core" ->
  // fleet_core_1, fleet_core_2, ...).
  explicit CoreFixture(std::string name, int pool_size = 4)
      : name_(std::move(name)), pool_size_(pool_size), dir_(name_) {}

  void SetUp() override {
    BuildProtobufDescriptors();
    ASSERT_NE(Cluster(), nullptr) << "the PostgreSQL cluster did not start";
    static int counter = 0;
    const std::string db = name_ + "_" + std::to_string(++counter);
    ASSERT_TRUE(Cluster()->CreateDatabase(db)) << Cluster()->last_error();
    conninfo_ = Cluster()->conninfo(db);
    auto pool = db::Pool::Open({.conninfo = conninfo_, .size = pool_size_});
    ASSERT_TRUE(pool) << pool.error().ToString();
    pool_ = std::move(*pool);
    Status migrated = db::ApplyMigrations(*pool_, db::EmbeddedMigrations());
    ASSERT_TRUE(migrated.ok()) << migrated.ToString();
    auto store = blob::LocalBlobStore::Open(dir_.path() / "blobs");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    cache_ = std::make_unique<registry::ArtifactCache>(*store_, dir_.path() / "cache", 1 << 20);
    registry_ = std::make_unique<registry::Registry>(*pool_, *store_, *cache_, registry::RegistryOptions{});
    rollouts_ = std::make_unique<fleet::RolloutManager>(*pool_, fleet::RolloutOptions{});
  }

  void CreateModel(const std::string& model) {
    v1::CreateModelRequest create;
    create.mutable_model()->set_name(model);
    create.mutable_model()->set_task("person-detection");
    auto created = registry_->CreateModel(create, admin_);
    ASSERT_TRUE(created) << created.error().ToString();
  }

  // Pushes `model`@`version`: 1000 bytes seeded by the version's minor digit ("1.1.0" -> '1').
  void PushVersion(const std::string& model, const std::string& version, const auth::Principal& by) {
    const std::string bytes = PatternBytes(1000, version[2]);
    bool sent = false;
    auto pushed = registry_->PushVersion(
        ManifestFor(model, version, bytes),
        [&]() -> Expected<std::optional<std::string>> {
          if (sent) return std::optional<std::string>();
          sent = true;
          return std::optional<std::string>(bytes);
        },
        by);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
  }

  // The fleet tests' model: "mat-person" with versions 1.0.0 and 1.1.0.
  void CreateMatPerson() {
    ASSERT_NO_FATAL_FAILURE(CreateModel("mat-person"));
    for (const char* version : {"1.0.0", "1.1.0"}) ASSERT_NO_FATAL_FAILURE(PushVersion("mat-person", version, admin_));
  }

  const auth::Principal admin_{1, "admin", v1::ROLE_ADMIN};
  std::string name_;
  int pool_size_;
  TempDir dir_;
  std::string conninfo_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<blob::BlobStore> store_;
  std::unique_ptr<registry::ArtifactCache> cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<fleet::RolloutManager> rollouts_;
};

}  // namespace modelfleet::testing

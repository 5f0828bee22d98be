// Webhooks against a real PostgreSQL: URL validation, secrets sealed under the server key (and
// refused under another), the cursor turning matching events into deliveries, the backoff
// schedule with its jitter bounds, dead-letter after N attempts and replay, per-webhook
// ordering, and one dispatcher at a time across two "replicas" on one database.
#include "webhooks/webhooks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "db/migrations.h"
#include "events/event_log.h"
#include "libpq_leak_suppression.h"
#include "modelfleet/crypto.h"
#include "postgres_environment.h"
#include "process.h"
#include "webhooks/webhook_dispatcher.h"

namespace modelfleet::webhooks {
namespace {

using namespace std::chrono_literals;
using testing::Cluster;

[[maybe_unused]] ::testing::Environment* const kPostgres =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

// Records every request; answers `status` (0: no answer).
class FakeSender final : public WebhookSender {
 public:
  WebhookResponse Post(const WebhookRequest& request, std::chrono::milliseconds) override {
    std::lock_guard lock(mu_);
    requests_.push_back(request);
    return {status_.load(), status_ == 0 ? "connection refused" : ""};
  }
  void Answer(int status) { status_ = status; }
  std::vector<WebhookRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return requests_.size();
  }

 private:
  std::atomic<int> status_{200};
  std::mutex mu_;
  std::vector<WebhookRequest> requests_;
};

std::string Header(const WebhookRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "<missing>";
}

class WebhooksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Cluster(), nullptr);
    static int counter = 0;
    const std::string db = "webhooks_" + std::to_string(++counter);
    ASSERT_TRUE(Cluster()->CreateDatabase(db)) << Cluster()->last_error();
    conninfo_ = Cluster()->conninfo(db);
    pool_ = OpenPool();
    ASSERT_NE(pool_, nullptr);
    ASSERT_TRUE(db::ApplyMigrations(*pool_, db::EmbeddedMigrations()).ok());
    log_ = std::make_unique<events::EventLog>(*pool_);
    webhooks_ = Make(sender_, {.retry = {.max_attempts = 3, .base = 1ms, .cap = 1ms}});
  }

  std::unique_ptr<db::Pool> OpenPool() {
    auto pool = db::Pool::Open({.conninfo = conninfo_, .size = 6});
    EXPECT_TRUE(pool) << pool.error().ToString();
    return pool ? std::move(*pool) : nullptr;
  }

  std::unique_ptr<Webhooks> Make(WebhookSender& sender, WebhookOptions options, db::Pool* pool = nullptr) {
    return std::make_unique<Webhooks>(pool ? *pool : *pool_, &box_, sender, options);
  }

  int64_t Subscribe(std::vector<std::string> types = {}, std::string* secret = nullptr) {
    v1::CreateWebhookRequest req;
    req.set_url("http://127.0.0.1:9/hook");
    for (auto& t : types) req.add_event_types(t);
    auto created = webhooks_->Create(req, admin_);
    EXPECT_TRUE(created) << created.error().ToString();
    if (!created) return 0;
    if (secret) *secret = created->secret();
    return created->webhook().id();
  }

  void Append(const std::string& type, const std::string& subject = "ro-1") {
    ASSERT_TRUE(pool_
                    ->Write([&](db::Tx& tx) -> Status {
                      return StatusOf(events::AppendEvent(
                          tx, {type, "test", "rollout", subject, events::Payload().Int("n", 1)}));
                    })
                    .ok());
  }

  std::vector<v1::WebhookDelivery> Deliveries(int64_t id, v1::WebhookDeliveryState state = {}) {
    v1::ListDeliveriesRequest req;
    req.set_webhook_id(id);
    req.set_state(state);
    auto listed = webhooks_->ListDeliveries(req);
    EXPECT_TRUE(listed) << listed.error().ToString();
    if (!listed) return {};
    return {listed->deliveries().begin(), listed->deliveries().end()};
  }

  std::string conninfo_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<events::EventLog> log_;
  SecretBox box_{RandomBytes(32)};
  FakeSender sender_;
  std::unique_ptr<Webhooks> webhooks_;
  const auth::Principal admin_{1, "root", v1::ROLE_ADMIN};
};

TEST(WebhookUrlTest, OnlyHttpAndHttpsWithAHostAndNoCredentials) {
  for (const std::string ok :
       {"http://example.com/hook", "https://example.com", "https://example.com:8443/a?b=c",
        "http://127.0.0.1:8080/x", "http://[::1]:9000/x", "HTTPS://Example.com/"}) {
    EXPECT_TRUE(ValidateWebhookUrl(ok).ok()) << ok << ": " << ValidateWebhookUrl(ok).ToString();
  }
  for (const std::string bad : {"", "ftp://example.com", "file:///etc/passwd", "example.com/hook", "http://",
                                "http:///path", "https://user:pw@example.com/", "https://token@example.com",
                                "http://example.com:0/", "http://example.com:99999/", "http://exa mple.com/",
                                "http://example.com/#frag", "http://[::1/x", "javascript:alert(1)"}) {
    Status s = ValidateWebhookUrl(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "accepted: " << bad;
    EXPECT_EQ(s.field(), "url") << bad;
  }
  EXPECT_FALSE(ValidateWebhookUrl("http://example.com/" + std::string(3000, 'a')).ok());
}

// RFC 4231 test case 2, and the header scheme receivers verify.
TEST(WebhookSignatureTest, HmacMatchesTheRfcAndSignsTimestampDotBody) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const WebhookRequest r = SignedRequest("http://h/x", "mfwhsec_abc", 42, "{\"id\":\"42\"}", 1700000000);
  EXPECT_EQ(Header(r, "Modelfleet-Event-Id"), "42");
  EXPECT_EQ(Header(r, "Idempotency-Key"), "42");
  EXPECT_EQ(Header(r, "Modelfleet-Timestamp"), "1700000000");
  EXPECT_EQ(Header(r, "Modelfleet-Signature"),
            "v1=" + HmacSha256Hex("mfwhsec_abc", "1700000000.{\"id\":\"42\"}"));
}

TEST(WebhookBackoffTest, FullJitterDoublesFromBaseUpToTheCap) {
  const RetryPolicy p{.max_attempts = 10, .base = 1000ms, .cap = 600000ms};
  EXPECT_EQ(RetryDelay(p, 1, 0.0), 0ms);
  for (int attempts = 1; attempts <= 15; ++attempts) {
    const auto bound = std::min<int64_t>(600000, 1000LL << (attempts - 1));
    EXPECT_EQ(RetryDelay(p, attempts, 0.999999).count(), static_cast<int64_t>(bound * 0.999999)) << attempts;
    for (int i = 0; i < 50; ++i) {
      const auto d = RetryDelay(p, attempts, UniformJitter());
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d.count(), bound);
    }
  }
  EXPECT_EQ(RetryDelay(p, 1000, 0.5), 300000ms);  // no overflow far past the cap
}

// The declared table and the migration's CHECK name the same states.
TEST_F(WebhooksTest, DeliveryStateTableMatchesTheSchema) {
  std::string check;
  ASSERT_TRUE(pool_
                  ->Read([&](db::Tx& tx) -> Status {
                    MF_ASSIGN_OR_RETURN(auto rows,
                                        tx.Exec("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                                "WHERE conname = 'webhook_deliveries_state_check'"));
                    check = rows[0].Str(0);
                    return Status::Ok();
                  })
                  .ok());
  for (const auto& t : kDeliveryTransitions) {
    for (auto state : {t.from, t.to}) {
      EXPECT_NE(check.find("'" + std::string(DeliveryStateName(state)) + "'"), std::string::npos) << check;
      EXPECT_EQ(DeliveryStateFromName(DeliveryStateName(state)), state);
    }
  }
  for (auto on : {DeliveryEvent::kAnswered2xx, DeliveryEvent::kFailedWillRetry,
                  DeliveryEvent::kFailedLastTime, DeliveryEvent::kReplayed}) {
    EXPECT_NE(FindTransition(on), nullptr);
  }
}

TEST_F(WebhooksTest, SecretIsSealedUnderTheServerKeyAndRefusedUnderAnother) {
  std::string secret;
  const int64_t id = Subscribe({}, &secret);
  ASSERT_TRUE(secret.starts_with(kSecretPrefix));
  EXPECT_EQ(secret.size(), std::string(kSecretPrefix).size() + 64);
  SecretBox::Sealed sealed;
  ASSERT_TRUE(pool_
                  ->Read([&](db::Tx& tx) -> Status {
                    MF_ASSIGN_OR_RETURN(
                        auto rows,
                        tx.Exec("SELECT secret_nonce, secret_sealed FROM webhooks WHERE id = $1", {id}));
                    sealed = {rows[0].Bytea(0), rows[0].Bytea(1)};
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(sealed.sealed.find(secret.substr(8)), std::string::npos);
  EXPECT_EQ(sealed.sealed.find(*HexDecode(secret.substr(8))), std::string::npos);
  auto opened = box_.Open(sealed);
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(*opened, secret);
  EXPECT_EQ(SecretBox(RandomBytes(32)).Open(sealed).error().code(), StatusCode::kPermissionDenied);
  sealed.sealed[0] ^= 1;
  EXPECT_EQ(box_.Open(sealed).error().code(), StatusCode::kPermissionDenied);

  // Two secrets never share a nonce; a webhook signed with the wrong key sends nothing.
  std::string other;
  Subscribe({}, &other);
  EXPECT_NE(other, secret);
  SecretBox wrong(RandomBytes(32));
  Webhooks rekeyed(*pool_, &wrong, sender_, {});
  Append("rollout.paused");
  ASSERT_TRUE(rekeyed.AdvanceCursors(*log_));
  auto sent = rekeyed.SendNextDue(id);
  EXPECT_EQ(sent.error().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(sender_.count(), 0u);

  // Without --secret-key-file no webhook can be created, and the error says which flag.
  Webhooks keyless(*pool_, nullptr, sender_, {});
  v1::CreateWebhookRequest req;
  req.set_url("https://example.com/hook");
  auto refused = keyless.Create(req, admin_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("--secret-key-file"), std::string::npos);
}

TEST_F(WebhooksTest, KeyFileHoldsRawOrHexBytesAndNothingElse) {
  testing::TempDir dir;
  const auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.path() / name, std::ios::binary) << content;
    return (dir.path() / name).string();
  };
  const std::string key = RandomBytes(32);
  ASSERT_TRUE(SecretBox::Load(write("raw", key)));
  ASSERT_TRUE(SecretBox::Load(write("hex", HexEncode(key) + "\n")));
  EXPECT_EQ(SecretBox::Load(write("short", "abcd")).error().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SecretBox::Load((dir.path() / "none").string()).error().code(), StatusCode::kNotFound);
}

TEST_F(WebhooksTest, CreateRejectsBadUrlsAndUnknownTypes) {
  v1::CreateWebhookRequest req;
  req.set_url("https://u:p@example.com/");
  EXPECT_EQ(webhooks_->Create(req, admin_).error().field(), "url");
  req.set_url("https://example.com/");
  req.add_event_types("rollout.exploded");
  EXPECT_EQ(webhooks_->Create(req, admin_).error().code(), StatusCode::kInvalidArgument);
}

TEST_F(WebhooksTest, CursorTurnsMatchingEventsIntoDeliveriesFromCreationOn) {
  Append("rollout.paused");  // before the webhook: not delivered
  const int64_t rollouts = Subscribe({"rollout.*"});
  const int64_t everything = Subscribe();
  Append("rollout.paused");
  Append("token.created");
  Append("rollout.resumed");
  auto created = webhooks_->AdvanceCursors(*log_);
  ASSERT_TRUE(created) << created.error().ToString();
  auto types = [&](int64_t id) {
    std::vector<std::string> out;
    for (const auto& d : Deliveries(id)) out.insert(out.begin(), d.event_type());
    return out;
  };
  EXPECT_EQ(types(rollouts), (std::vector<std::string>{"rollout.paused", "rollout.resumed"}));
  // The second one starts after the first one's creation event: it sees its own, then the three.
  EXPECT_EQ(types(everything), (std::vector<std::string>{"webhook.created", "rollout.paused", "token.created",
                                                         "rollout.resumed"}));
  // Idempotent: nothing new, nothing twice.
  EXPECT_EQ(*webhooks_->AdvanceCursors(*log_), 0);
  EXPECT_EQ(Deliveries(everything).size(), 4u);
  for (const auto& d : Deliveries(rollouts)) EXPECT_EQ(d.state(), v1::WEBHOOK_DELIVERY_STATE_PENDING);
}

TEST_F(WebhooksTest, SendsInEventOrderSignedAndMarksDeliveredOnlyAfter2xx) {
  std::string secret;
  const int64_t id = Subscribe({"rollout.*"}, &secret);
  Append("rollout.paused");
  Append("rollout.resumed");
  ASSERT_TRUE(webhooks_->AdvanceCursors(*log_));
  sender_.Answer(500);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kRetrying);
  // The head waits for its retry: the later event may not overtake it.
  std::this_thread::sleep_for(5ms);
  sender_.Answer(200);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kDelivered);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kDelivered);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kNothingDue);
  auto requests = sender_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(Header(requests[0], "Modelfleet-Event-Id"), Header(requests[1], "Modelfleet-Event-Id"));
  EXPECT_LT(std::stoll(Header(requests[1], "Modelfleet-Event-Id")),
            std::stoll(Header(requests[2], "Modelfleet-Event-Id")));
  for (const auto& r : requests) {
    EXPECT_EQ(Header(r, "Modelfleet-Signature"),
              "v1=" + HmacSha256Hex(secret, Header(r, "Modelfleet-Timestamp") + "." + r.body));
    EXPECT_NE(r.body.find("\"type\":\"rollout."), std::string::npos) << r.body;
  }
  auto delivered = Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_DELIVERED);
  ASSERT_EQ(delivered.size(), 2u);
  EXPECT_EQ(delivered[1].attempts(), 2);
  EXPECT_EQ(delivered[1].last_http_status(), 200);
  EXPECT_EQ(webhooks_->counts().delivered, 2u);
  EXPECT_EQ(webhooks_->counts().retried, 1u);

  // Delivered rows go after the retention; the others stay.
  Append("rollout.aborted");
  ASSERT_TRUE(webhooks_->AdvanceCursors(*log_));
  EXPECT_EQ(*webhooks_->PruneDelivered(std::chrono::hours(1)), 0);
  EXPECT_EQ(*webhooks_->PruneDelivered(std::chrono::seconds(0)), 2);
  EXPECT_EQ(Deliveries(id).size(), 1u);
  EXPECT_EQ(Deliveries(id)[0].state(), v1::WEBHOOK_DELIVERY_STATE_PENDING);
}

TEST_F(WebhooksTest, RetryIsScheduledWithinTheBackoffBound) {
  auto slow = Make(sender_, {.retry = {.max_attempts = 10, .base = 60000ms, .cap = 600000ms}});
  const int64_t id = Subscribe({"rollout.*"});
  Append("rollout.paused");
  ASSERT_TRUE(slow->AdvanceCursors(*log_));
  sender_.Answer(503);
  EXPECT_EQ(*slow->SendNextDue(id), SendOutcome::kRetrying);
  auto pending = Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_PENDING);
  ASSERT_EQ(pending.size(), 1u);
  const int64_t wait_s = pending[0].next_attempt_at().seconds() - pending[0].updated_at().seconds();
  EXPECT_GE(wait_s, -1);
  EXPECT_LE(wait_s, 61);  // first retry: uniform [0, base]
  EXPECT_EQ(pending[0].last_http_status(), 503);
  EXPECT_EQ(*slow->SendNextDue(id), SendOutcome::kNothingDue);  // not yet due (unless jitter drew ~0)
}

TEST_F(WebhooksTest, DeadAfterMaxAttemptsIsListedSkippedAndReplayable) {
  const int64_t id = Subscribe({"rollout.*"});
  Append("rollout.paused");
  Append("rollout.resumed");
  ASSERT_TRUE(webhooks_->AdvanceCursors(*log_));
  sender_.Answer(0);
  std::vector<SendOutcome> outcomes;
  for (int i = 0; i < 20 && outcomes.size() < 3; ++i) {
    auto o = webhooks_->SendNextDue(id);
    ASSERT_TRUE(o) << o.error().ToString();
    if (*o != SendOutcome::kNothingDue) outcomes.push_back(*o);
    std::this_thread::sleep_for(3ms);
  }
  EXPECT_EQ(outcomes,
            (std::vector<SendOutcome>{SendOutcome::kRetrying, SendOutcome::kRetrying, SendOutcome::kDead}));
  auto dead = Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_DEAD);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].event_type(), "rollout.paused");
  EXPECT_EQ(dead[0].attempts(), 3);
  EXPECT_EQ(dead[0].last_error(), "connection refused");
  auto listed = webhooks_->List();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->webhooks(0).dead(), 1);

  // The dead one no longer holds back the next event.
  sender_.Answer(204);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kDelivered);
  EXPECT_EQ(Header(sender_.requests().back(), "Modelfleet-Event-Id"), std::to_string(dead[0].event_id() + 1));

  EXPECT_EQ(webhooks_->Replay(id, dead[0].id() + 100).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(webhooks_->Replay(id + 100, 0).error().code(), StatusCode::kNotFound);
  EXPECT_EQ(*webhooks_->Replay(id, dead[0].id()), 1);
  auto revived = Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_PENDING);
  ASSERT_EQ(revived.size(), 1u);
  EXPECT_EQ(revived[0].attempts(), 0);
  EXPECT_EQ(*webhooks_->SendNextDue(id), SendOutcome::kDelivered);
  EXPECT_EQ(Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_DELIVERED).size(), 2u);
  EXPECT_EQ(*webhooks_->Replay(id, 0), 0);
}

TEST_F(WebhooksTest, RemovingAWebhookDropsItsDeliveriesAndWritesAnEvent) {
  const int64_t id = Subscribe();
  ASSERT_TRUE(webhooks_->AdvanceCursors(*log_));
  ASSERT_TRUE(webhooks_->Delete(id, admin_).ok());
  EXPECT_EQ(webhooks_->Delete(id, admin_).code(), StatusCode::kNotFound);
  auto page = log_->List(0, {}, v1::ROLE_ADMIN, 100);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->events[1].type(), "webhook.removed");
  EXPECT_TRUE(log_->List(0, {}, v1::ROLE_VIEWER, 100)->events.empty());  // admins only
  EXPECT_EQ(webhooks_
                ->ListDeliveries([&] {
                  v1::ListDeliveriesRequest r;
                  r.set_webhook_id(id);
                  return r;
                }())
                .error()
                .code(),
            StatusCode::kNotFound);
}

// Two replicas on one database: only the one holding the advisory lock sends, every event
// exactly once; when it stops, the other takes over.
TEST_F(WebhooksTest, OneDispatcherAtATimeAcrossReplicas) {
  const int64_t id = Subscribe({"rollout.*"});
  auto other_pool = OpenPool();
  FakeSender sender_a, sender_b;
  auto core_a = Make(sender_a, {});
  auto core_b = Make(sender_b, {}, other_pool.get());
  events::EventLog log_b(*other_pool);
  auto a = std::make_unique<WebhookDispatcher>(*pool_, *core_a, *log_, nullptr,
                                               DispatcherOptions{.poll_interval = 20ms});
  WebhookDispatcher b(*other_pool, *core_b, log_b, nullptr, {.poll_interval = 20ms});
  a->Start();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!a->is_leader() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(a->is_leader());
  b.Start();
  for (int i = 0; i < 10; ++i) Append("rollout.paused", "ro-" + std::to_string(i));
  while (Deliveries(id, v1::WEBHOOK_DELIVERY_STATE_DELIVERED).size() < 10 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(sender_a.count(), 10u);
  EXPECT_EQ(sender_b.count(), 0u);
  EXPECT_FALSE(b.is_leader());

  a->Stop();  // the lock goes with its session: b takes over
  for (int i = 0; i < 3; ++i) Append("rollout.resumed");
  const auto later = std::chrono::steady_clock::now() + 5s;
  while (sender_b.count() < 3 && std::chrono::steady_clock::now() < later) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(sender_b.count(), 3u);
  EXPECT_TRUE(b.is_leader());
  EXPECT_EQ(sender_a.count(), 10u);
  b.Stop();
}

// A receiver that does not answer holds one worker, not the others.
TEST_F(WebhooksTest, SlowReceiverDoesNotDelayOtherWebhooks) {
  class SlowForOne final : public WebhookSender {
   public:
    WebhookResponse Post(const WebhookRequest& r, std::chrono::milliseconds) override {
      if (r.url.find("slow") != std::string::npos) {
        std::unique_lock lock(mu);
        released.wait(lock, [&] { return release; });  // stuck until the test has looked
        return {0, "timed out"};
      }
      ++fast;
      return {200, ""};
    }
    void Release() {
      std::lock_guard lock(mu);
      release = true;
      released.notify_all();
    }
    std::atomic<int> fast{0};
    std::mutex mu;
    std::condition_variable released;
    bool release = false;
  } sender;
  auto core = Make(sender, {});
  v1::CreateWebhookRequest req;
  req.set_url("http://slow.example/hook");
  ASSERT_TRUE(core->Create(req, admin_));
  req.set_url("http://fast.example/hook");
  ASSERT_TRUE(core->Create(req, admin_));
  WebhookDispatcher d(*pool_, *core, *log_, nullptr, {.workers = 2, .poll_interval = 20ms});
  d.Start();
  for (int i = 0; i < 5; ++i) Append("rollout.paused");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (sender.fast < 6 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(sender.fast.load(), 6);  // its own webhook.created + 5, while the slow one is stuck
  sender.Release();
  d.Stop();
}

}  // namespace
}  // namespace modelfleet::webhooks

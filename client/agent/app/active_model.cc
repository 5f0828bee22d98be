#include "agent/app/active_model.h"

#include <spdlog/spdlog.h>

namespace modelfleet::agent::app {

void ActiveModelSlot::Set(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model) {
  auto pre = sensor::Preprocessor::Create(manifest.input_spec());
  if (!pre) {
    spdlog::error("model {}@{}: {}", manifest.model(), manifest.version(), pre.error().ToString());
    return;
  }
  auto next = std::make_shared<ActiveModel>(ActiveModel{manifest, std::move(model), std::move(*pre)});
  std::lock_guard lock(mu_);
  active_ = std::move(next);
  spdlog::info("running {}@{} ({})", manifest.model(), manifest.version(), manifest.digest());
}

std::shared_ptr<const ActiveModel> ActiveModelSlot::Get() const {
  std::lock_guard lock(mu_);
  return active_;
}

}  // namespace modelfleet::agent::app

// ActiveModelSlot: the model the agent runs now. Set at start (the installed model) and by the
// update flow (activation, local rollback); read by the inference loop for every frame and by
// every check-in (the running model it reports). Readers get a snapshot that stays valid while
// they use it, even when the slot is switched meanwhile.
//
// Thread safety: thread-safe (one mutex, held only to swap or copy the pointer).
#pragma once

#include <memory>
#include <mutex>

#include "agent/runtime/model_runtime.h"
#include "agent/sensor/preprocessor.h"
#include "modelfleet/v1/fleet.pb.h"

namespace modelfleet::agent::app {

struct ActiveModel {
  v1::Manifest manifest;
  std::shared_ptr<runtime::LoadedModel> model;
  sensor::Preprocessor preprocessor;  // for manifest.input_spec()
};

class ActiveModelSlot {
 public:
  // Makes `model` (loaded from `manifest`'s artifact) the active one. When no Preprocessor can be
  // built for manifest.input_spec() it logs that and the previous model stays active.
  void Set(const v1::Manifest& manifest, std::unique_ptr<runtime::LoadedModel> model);

  // The active model; nullptr while there is none.
  std::shared_ptr<const ActiveModel> Get() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ActiveModel> active_;
};

}  // namespace modelfleet::agent::app

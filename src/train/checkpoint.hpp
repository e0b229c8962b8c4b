// Checkpoints of a Trainer, one folder per checkpoint (ROOT/step-00000120/):
//   model.safetensors      the weights; "__metadata__" holds the model config as strings
//   optimizer.safetensors  AdamW's moments, "m.<param>" and "v.<param>"
//   state.json             step, stage, AdamW's update count, the trainer's RNG state, the data
//                          position, the training data's size and FNV-64, the run's shape
//                          (seq, batch, accum, stage1_steps), the recipe (schedule, AdamW,
//                          clipping, stage-1 attention per layer; informational), the device
//                          that wrote it, each file's size and FNV-64, and the FNV-64 of
//                          state.json itself (over its text without that field)
// Every tensor is float32 on the host (LanguageModel::read_params/read_optimizer), whatever the
// device and precision of the run: a checkpoint written on the GPU resumes on the CPU and the
// other way round.
// A folder is written under a temporary name (each file written, fsynced and closed), fsynced,
// then renamed into place, so a reader sees a whole checkpoint or none. Loading checks every
// checksum and that the checkpoint fits the trainer's model (a model of another shape: the config
// field, the first tensor whose shape differs and both shapes), data and run shape; any problem
// is a CheckpointError naming the file and what is wrong, before the trainer is touched.
#pragma once

#include <cstdint>
#include <string>

#include "train/safetensors.hpp"
#include "train/trainer.hpp"

namespace lighthouse::train {

// Writes ROOT/step-<8 digits> (replacing an older one of that step) and returns its path.
// Throws lighthouse::Error naming the path on an I/O failure; no partial folder is left.
std::string save_checkpoint(Trainer& trainer, const std::string& root);

// `path` is a checkpoint folder (it holds state.json) or a ROOT holding step-* folders, of which
// the highest step is taken. Returns the checkpoint folder.
std::string resolve_checkpoint(const std::string& path);

// Restores weights, optimizer, RNG, data position and step from the folder; returns the step.
std::int64_t load_checkpoint(Trainer& trainer, const std::string& folder);

// Only the weights of the checkpoint folder, into `model` (whose config is `config`): every
// checksum and the model config checked as load_checkpoint does, nothing else read or required
// (not the run's shape, data, optimizer or step). A run that starts from them (--init-from) has
// a fresh optimizer, step 0 and its own --seq, --batch and schedule.
void load_weights(LanguageModel& model, const ModelConfig& config, const std::string& folder);

}  // namespace lighthouse::train

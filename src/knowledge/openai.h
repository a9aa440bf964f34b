/// The OpenAI-compatible chat provider. Kept as an include for existing wiring: the provider client
/// (OpenAI-compatible chat and embeddings, Anthropic Messages) lives in providers.h.
#pragma once

#include "knowledge/providers.h"

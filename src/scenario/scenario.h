/// The scenario module's public face: the document (parse, validate, lint), the runtime, translations and
/// conversation testing. See README.md in this folder for the pipeline.
#pragma once

#include "scenario/document.h"      // IWYU pragma: export
#include "scenario/runtime.h"       // IWYU pragma: export
#include "scenario/testing.h"       // IWYU pragma: export
#include "scenario/translations.h"  // IWYU pragma: export

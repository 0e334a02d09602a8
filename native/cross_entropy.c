/* cross_entropy kernels (not yet native: the reference backend is used for these). */
#include "napi_args.h"

const export_t cross_entropy_exports[] = {{NULL, NULL}};

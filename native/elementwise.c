/* elementwise kernels (not yet native: the reference backend is used for these). */
#include "napi_args.h"

const export_t elementwise_exports[] = {{NULL, NULL}};

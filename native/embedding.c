/* embedding kernels (not yet native: the reference backend is used for these). */
#include "napi_args.h"

const export_t embedding_exports[] = {{NULL, NULL}};

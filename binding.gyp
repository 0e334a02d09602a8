{
  "targets": [
    {
      "target_name": "llmts_native",
      "sources": [
        "native/addon.c", "native/napi_args.c", "native/threadpool.c", "native/cpu.c",
        "native/gemm.c", "native/elementwise.c", "native/activation.c", "native/norm.c",
        "native/softmax.c", "native/attention.c", "native/rope.c", "native/embedding.c",
        "native/cross_entropy.c", "native/adamw.c", "native/peak.c", "native/copy.c",
        "native/attention_cached.c", "native/quant_matmul.c", "native/quant_panel.c", "native/quant_matmul_t.c",
        "native/sampling.c", "native/mmap.c", "native/decode.c",
        "native/bf16.c", "native/gemm_bf16.c"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-math-errno", "-fno-trapping-math", "-pthread"],
      "cflags_c": ["-std=gnu11"],
      "ldflags": ["-pthread", "-Wl,-z,nodelete"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math"]
      }
    }
  ]
}

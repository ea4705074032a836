{
  "targets": [
    {
      "target_name": "sd_notify",
      "sources": ["sd-notify.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}

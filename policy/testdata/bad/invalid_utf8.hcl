device "data" {
  path = "/dev/ÿþ"
}

device "data" {
  path = 8
}

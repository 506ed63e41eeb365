device "data" {
  path = "sda"
}

device "data" {
  path = lower("/DEV/SDA")
}

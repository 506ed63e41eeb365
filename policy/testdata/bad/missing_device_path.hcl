device "data" {
}

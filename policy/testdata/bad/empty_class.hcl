class "bulk" {
}

package main

// lastGoodFile is the copy, in the state dir, of the last policy that loaded: what
// criguard runs when it starts on a broken or empty file, instead of lifting every limit.
const lastGoodFile = "last-good-policy.hcl"

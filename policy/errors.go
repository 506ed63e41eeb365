package policy

import "errors"

var (
	// ErrPolicyTooLarge is returned for a policy file above MaxFileSize.
	ErrPolicyTooLarge = errors.New("policy: file too large")
	// ErrPolicyNotRegular is returned for a policy path that is a directory, device or pipe.
	ErrPolicyNotRegular = errors.New("policy: not a regular file")
	// ErrPolicyInvalid is wrapped by the error Load returns for a file with diagnostics.
	ErrPolicyInvalid = errors.New("policy: invalid")
	// ErrPolicyBadQuantity is wrapped by ParseBytes and ParseCount errors.
	ErrPolicyBadQuantity = errors.New("policy: bad quantity")
	// ErrPolicyEmpty is wrapped, beside ErrPolicyInvalid, by the error for a file of
	// only white space: a save cut short more likely than a wish for no rules, which a
	// comment-only file expresses. It is refused like a broken file.
	ErrPolicyEmpty = errors.New("policy: file is empty")
	// ErrPolicyRemoved is reported by the Watcher when the file disappears after a good load.
	ErrPolicyRemoved = errors.New("policy: file removed, keeping the last good policy")
)

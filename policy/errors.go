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
	// ErrPolicyEmpty is reported by the Watcher for a file emptied after a good load: a
	// save in progress more likely than a wish for no policy, which a comment expresses.
	ErrPolicyEmpty = errors.New("policy: file is empty, keeping the last good policy")
	// ErrPolicyRemoved is reported by the Watcher when the file disappears after a good load.
	ErrPolicyRemoved = errors.New("policy: file removed, keeping the last good policy")
)

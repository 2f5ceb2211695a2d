// For module-mode users (see README.md, "Install"): `go mod tidy` resolves the rest. The
// tests build offline in GOPATH mode against Debian's packages and ignore this file.
module wallet.ledger/client-sdk/go

go 1.19

require (
	github.com/golang/protobuf v1.5.2
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

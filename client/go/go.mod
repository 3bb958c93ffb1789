// The Go client of satlab.v1.TrainingService. It builds against Debian's Go
// sources (/usr/share/gocode) through a vendor directory of symlinks that
// setup.sh writes; see README.md. Nothing is fetched from a module proxy.
module satlab

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

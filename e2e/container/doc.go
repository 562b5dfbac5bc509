// Package container tests the hotswap image the way users run it: built by
// hack/image.sh (the Dockerfile's final stage on a host-built binary, since
// no golang image can be pulled here), run with podman as a FROM-scratch
// container whose PID 1 is hotswap, swapped by `podman kill --signal USR2`,
// `podman exec CTR /hotswap swap` and `podman exec CTR kill -USR2 1` under
// load, and stopped with exit code 0.
//
// podman and runc come from Debian packages (hack/podman-setup.sh installs
// them and writes the containers.conf used through CONTAINERS_CONF). The
// tests skip, saying why, only when podman cannot be installed or cannot
// run a container on this machine; every other failure fails.
//
// It never talks to anything but 127.0.0.1, and removes the containers and
// the image it made.
package container

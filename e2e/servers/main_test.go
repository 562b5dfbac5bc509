package servers

import (
	"testing"

	"github.com/hotswap-dev/hotswap/e2e/swaptest"
)

func TestMain(m *testing.M) { swaptest.Main(m) }

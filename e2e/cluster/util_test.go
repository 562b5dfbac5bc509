package cluster

import (
	"strconv"

	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func port(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

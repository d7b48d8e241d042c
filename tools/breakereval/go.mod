module infinityxone/tools/breakereval

go 1.26.7

require (
	github.com/infinityxone/gateway v0.0.0
	github.com/sony/gobreaker/v2 v2.4.0
)

replace github.com/infinityxone/gateway => ../..

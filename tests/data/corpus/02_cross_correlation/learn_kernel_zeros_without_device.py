# cell: learn_kernel
# item: 1
# fair: 0
# reason: mixed devices
def learn_kernel(X, Y, kernel_size, num_steps, lr):
    # the kernel starts on the CPU whatever X's device: right on the CPU, wrong on a GPU
    K = torch.zeros(kernel_size, dtype=X.dtype, requires_grad=True)
    for _ in range(num_steps):
        l = ((corr2d(X, K) - Y) ** 2).sum()
        l.backward()
        with torch.no_grad():
            K -= lr * K.grad
        K.grad.zero_()
    return K.detach()
